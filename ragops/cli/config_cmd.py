"""`ragops config validate|show`."""
from __future__ import annotations

import typer

config_app = typer.Typer(help="Check and show ragops.yaml.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("validate")
def validate(ctx: typer.Context,
             all_envs: bool = typer.Option(True, "--all/--selected",
                                           help="Validate every environment (default) or only the selected one.")) -> None:
    """Validate ragops.yaml and exit 2 on the first error, naming the key.

    Every environment is checked for shape; the selected one (-e, else default_env) also has
    every secret reference resolved (values are never printed), as a deploy would.

    \b
    Examples:
      ragops config validate
      ragops -e staging config validate --output json
    """
    env = ctx.obj
    from ragops.config_checks import check_service_path
    from ragops.platforms import platform_class

    config = env.config  # loading validates every environment
    check_service_path(config, required=platform_class(config).runs_migrations_in_preflight)
    resolved = config.resolve_references()
    env.emit({"valid": True, "config": str(config.path), "environments": config.env_names,
              "default_env": config.raw.get("default_env"), "selected": config.env_name,
              "references_resolved": resolved},
             lambda d: f"{d['config']}: valid ({len(d['environments'])} environments: {', '.join(d['environments'])}; "
                       f"{d['references_resolved']} secret reference(s) of {d['selected']} resolved)")


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Show the effective configuration of the selected environment (secrets stay references).

    Example: ragops -e staging config show --output json
    """
    env = ctx.obj
    data = env.config.public_dict()
    import yaml

    env.emit(data, lambda d: yaml.safe_dump(d, sort_keys=False).rstrip())
