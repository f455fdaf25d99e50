"""`ragops init`: write a commented ragops.yaml that works as is (the first run of a wheel user)."""
from __future__ import annotations

import typer

PLATFORMS = ("local", "docker")


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(ctx: typer.Context,
         platform: str = typer.Option("local", "--platform", help="local (processes, pip only) or docker."),
         force: bool = typer.Option(False, "--force", help="Replace an existing file.")) -> None:
    """Write ragops.yaml (or --config FILE) for one environment, commented, ready for `ragops up`.

    The service is the one shipped with ragops unless ./service exists beside the file; secrets are
    generated on first use. An existing file is kept unless --force.

    \b
    Examples:
      ragops init && ragops up
      ragops init --platform docker
      ragops -c ops/ragops.yaml init --force --output json
    """
    env = ctx.obj
    from ragops.errors import UsageError
    from ragops.init_config import write_config

    if platform not in PLATFORMS:
        raise UsageError(f"--platform: expected {' or '.join(PLATFORMS)}, got {platform!r}")
    result = write_config(env.config_path, platform, force=force)
    env.emit(result, lambda r: f"wrote {r['config']} (environment {r['environment']}, platform {r['platform']}); "
             f"next: {r['next']}")
