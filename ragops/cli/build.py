"""`ragops build`: build the service image on the environment's docker hosts."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("build")(build)


def build(ctx: typer.Context,
          version: str | None = typer.Option(None, "--version", help="Image tag (default: service.version)."),
          push: bool | None = typer.Option(None, "--push/--no-push",
                                              help="Push after building (default: docker.push in ragops.yaml)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be built; build nothing.")) -> None:
    """Build <service.image>:<version> from service/Dockerfile on every docker host.

    The base image is the BASE_IMAGE build argument (docker.base_image); the image is labelled
    with the version and the git revision. With --push (or docker.push) it is pushed to the
    registry its repository names; no registry was available to test pushing against.

    Example: ragops -e staging build --version v2
    """
    env = ctx.obj
    config = env.config
    if dry_run:
        repo = config.service.image or f"{config.project}/rag-service"
        tag = version or config.service.version
        plan = [f"build {repo}:{tag} from {config.service.path}/Dockerfile on {host} "
                f"(BASE_IMAGE={config.env.docker.base_image})" for host in config.env.hosts]
        if push if push is not None else config.env.docker.push:
            plan.append(f"push {repo}:{tag}")
        env.emit({"plan": plan}, lambda d: "\n".join(["would do:"] + [f"  - {s}" for s in d["plan"]]))
        return
    from ragops.platforms.docker_build import build as run_build

    result = run_build(config, version, push=push, progress=env.progress("build"))
    env.emit(result, lambda r: f"built {r.image} on {len(r.hosts)} host(s) in {r.seconds:.1f}s"
             + (f" (revision {r.revision})" if r.revision else "") + (", pushed" if r.pushed else ""))
