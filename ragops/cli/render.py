"""`ragops render`: a kubernetes environment's manifests, from ragops.yaml alone (no cluster)."""
from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command("render")(render)


def render(ctx: typer.Context,
           out: str | None = typer.Option(None, "--out", help="Write one file per group into this directory "
                                                                 "(default: print the YAML to stdout)."),
           version: str | None = typer.Option(None, "--version", help="The image tag (default: service.version).")
           ) -> None:
    """Render the Kubernetes manifests of a kubernetes environment; needs no cluster.

    The same objects ragops applies, as in templates/kubernetes/ (blue live with its replicas left
    to the HPAs, green idle at 0), for this environment and version. Secrets are never rendered:
    the Secret carries placeholders. templates/ is not touched.

    Example: ragops -e production render --out build/k8s --version v2
    """
    env = ctx.obj
    config = env.config
    from ragops.errors import UsageError
    from ragops.platforms import platform_class
    from ragops.platforms.kubernetes import KubernetesPlatform

    kind = platform_class(config)
    if not issubclass(kind, KubernetesPlatform):
        raise UsageError(f"render: environment {config.env_name} runs on the {kind.name} platform; "
                         "only kubernetes environments have manifests")
    if version:
        from ragops.settings.labels import check_version_label

        check_version_label(version, "--version")
    from ragops.platforms import k8s_manifests as m

    origin = "with `ragops render`" + (f" for version {version}." if version else ".")
    if out:
        written = m.write_templates(config, out, version, origin)
        env.emit({"directory": out, "files": written},
                 lambda d: "\n".join(f"{d['directory'].rstrip('/')}/{name}" for name in d["files"]))
        return
    rendered = m.render_templates(config, version)
    if env.json:
        env.emit(rendered)
        return
    # plain YAML on stdout (not through the console: nothing may wrap or restyle it)
    sys.stdout.write("".join(m.template_text(name, docs, config.env_name, origin) for name, docs in rendered.items()))
