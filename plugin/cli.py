"""The ``mailunblock`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
from mailunblock.plugin.config import Config, ConfigError, load_config

CONFIG_HELP = "Configuration file (TOML). Default: $MAILUNBLOCK_CONFIG, else ./mailunblock.toml."


def _config_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("MAILUNBLOCK_CONFIG", "mailunblock.toml"),
        show_default="$MAILUNBLOCK_CONFIG or mailunblock.toml",
        help=CONFIG_HELP,
    )(func)


def _load(config_path: Path) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="mailunblock")
def main(verbose: int) -> None:
    """Recover Microsoft 365 accounts blocked from sending mail, from Jira tickets."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.group()
def config() -> None:
    """Validate or describe the configuration file."""


@config.command("check")
@_config_option
def config_check(config_path: Path) -> None:
    """Validate the configuration file and that every secret reference resolves."""
    cfg = _load(config_path)
    problems: list[str] = []
    refs = [("jira.api_token", cfg.jira.api_token), ("jira.personal_access_token", cfg.jira.personal_access_token)]
    for tenant in cfg.tenants:
        refs += [
            (f"tenants.{tenant.name}.client_secret", tenant.client_secret),
            (f"tenants.{tenant.name}.certificate_passphrase", tenant.certificate_passphrase),
        ]
        if tenant.certificate_path and not cfg.path(tenant.certificate_path).is_file():
            problems.append(f"tenants.{tenant.name}.certificate_path: {cfg.path(tenant.certificate_path)} not found")
    refs.append(("store.vault_key", cfg.store.vault_key))
    for key, ref in refs:
        if ref is None:
            continue
        try:
            cfg.secret(ref)
        except ConfigError as exc:
            problems.append(f"{key}: {exc}")
    click.echo(f"{config_path}: syntax and values OK")
    click.echo(f"  jira: {cfg.jira.url} ({cfg.jira.deployment.value})  jql: {cfg.jira.search_jql}")
    for tenant in cfg.tenants:
        click.echo(f"  tenant {tenant.name}: {', '.join(tenant.domains)}  graph: {tenant.graph_url}")
    click.echo(f"  store: {cfg.database_url.split('://')[0]}  poll every {cfg.poller.interval_seconds:g} s")
    if problems:
        click.echo("Secret and file references that do not resolve:", err=True)
        for line in problems:
            click.echo(f"  {line}", err=True)
        sys.exit(1)


@config.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration file."""
    click.echo(json.dumps(Config.model_json_schema(), indent=2))


@main.command()
@_config_option
def doctor(config_path: Path) -> None:
    """Check Jira and every tenant end to end; exit 1 if anything fails."""
    from mailunblock.plugin.doctor import Status, run_doctor

    cfg = _load(config_path)
    failed = 0
    for result in run_doctor(cfg):
        click.echo(result.render())
        failed += result.status is Status.FAIL
    click.echo(f"\n{'all checks passed' if not failed else f'{failed} check(s) FAILED'}")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--scenario", default="default", show_default=True, help="Scenario name or TOML file.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/sandbox"),
              show_default=True, help="Where the CA, certificates, secrets and Jira token are written.")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Sandbox clock speed factor.")
@click.option("--without-permission", "revoke", multiple=True, metavar="TENANT:PERMISSION",
              help="Start with an app permission missing, e.g. contoso:User.RevokeSessions.All.")
def sandbox(scenario: str, state_dir: Path, speed: float, revoke: tuple[str, ...]) -> None:
    """Run the local EMULATORS of Jira and Microsoft 365 on loopback until Ctrl-C."""
    from mailunblock.sandbox.server import serve

    pairs = []
    for item in revoke:
        tenant, sep, permission = item.partition(":")
        if not sep or not tenant or not permission:
            raise click.BadParameter(f"{item!r}: expected TENANT:PERMISSION", param_hint="--without-permission")
        pairs.append((tenant, permission))
    serve(state_dir=state_dir, scenario=scenario, speed=speed, revoke=pairs)
