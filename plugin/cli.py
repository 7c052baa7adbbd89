"""The ``mailunblock`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from mailunblock.plugin.config import Config, ConfigError, load_config
from mailunblock.plugin.logs import LogFormat
from mailunblock.plugin.report import ReportFormat

if TYPE_CHECKING:
    from mailunblock.plugin.metrics import Metrics
    from mailunblock.plugin.services import Runtime
    from mailunblock.plugin.store import StateStore
    from mailunblock.plugin.vault import PasswordVault

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


_VERBOSITY = "mailunblock.verbosity"


def verbosity(ctx: click.Context) -> int:
    """How many ``-v`` the command line holds, before or after the subcommand."""
    return int(ctx.find_root().meta.get(_VERBOSITY, 0))


def _count_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    root = ctx.find_root()
    root.meta[_VERBOSITY] = verbosity(ctx) + value
    level = max(logging.WARNING - 10 * root.meta[_VERBOSITY], logging.DEBUG)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


def _global_options() -> list[click.Parameter]:
    """Options every command takes, before or after its name (``mailunblock -v run`` = ``mailunblock run -v``)."""
    return [click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_count_verbose,
                         help="More log output (-vv for debug); also accepted after the command name.")]


class CommandGroup(click.Group):
    """A group whose commands (and sub-groups') all take the global options."""

    group_class = type  # sub-groups are CommandGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register ``cmd`` with the global options added to its own."""
        known = {opt for param in cmd.params for opt in getattr(param, "opts", ())}
        cmd.params += [p for p in _global_options() if not known & set(p.opts)]
        super().add_command(cmd, name)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]},
             params=_global_options())
@click.version_option(package_name="mailunblock")
def main() -> None:
    """Recover Microsoft 365 accounts blocked from sending mail, from Jira tickets.

    Example: mailunblock demo

    Exit codes: 0 success, 1 failure (the command says which), 2 bad usage.
    """


@main.group()
def config() -> None:
    """Validate or describe the configuration file.

    Example: mailunblock config check --config mailunblock.toml

    Exit codes: 0 success, 1 configuration problem, 2 bad usage.
    """


@config.command("check")
@_config_option
def config_check(config_path: Path) -> None:
    """Validate the configuration file and that every secret reference resolves.

    Example: mailunblock config check --config /etc/mailunblock/mailunblock.toml

    Exit codes: 0 valid, 1 invalid or a secret/file reference does not resolve, 2 bad option.
    """
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
    if cfg.store.url is None and cfg.data_dir.exists() and not cfg.data_dir.is_dir():
        problems.append(f"store.data_dir: {cfg.data_dir} is not a folder")
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
    """Print the JSON schema of the configuration file.

    Example: mailunblock config schema > mailunblock.schema.json

    Exit codes: 0 printed, 2 bad option.
    """
    click.echo(json.dumps(Config.model_json_schema(), indent=2))


def _need_sandbox_extra() -> None:
    """The emulators need Flask, which a production install leaves out: say how to get it."""
    import importlib.util

    if importlib.util.find_spec("flask") is None:
        raise click.ClickException(
            "the sandbox emulators are not installed: pip install 'mailunblock[sandbox]'"
        )


@main.command()
@_config_option
def doctor(config_path: Path) -> None:
    """Check Jira and every tenant end to end; exit 1 if anything fails.

    Example: mailunblock doctor --config config/sandbox.toml

    Exit codes: 0 every check passed, 1 a check failed or the configuration is invalid, 2 bad option.
    """
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
    """Run the local EMULATORS of Jira and Microsoft 365 on loopback until Ctrl-C.

    Each start re-seeds the emulated Jira and empties the sandbox's state store.

    Example: mailunblock sandbox --speed 60

    Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 cannot start (port taken, bad scenario), 2 bad option.
    """
    _need_sandbox_extra()
    from mailunblock.sandbox.scenario import ScenarioError
    from mailunblock.sandbox.server import SandboxError, serve

    pairs = []
    for item in revoke:
        tenant, sep, permission = item.partition(":")
        if not sep or not tenant or not permission:
            raise click.BadParameter(f"{item!r}: expected TENANT:PERMISSION", param_hint="--without-permission")
        pairs.append((tenant, permission))
    try:
        serve(state_dir=state_dir, scenario=scenario, speed=speed, revoke=pairs)
    except (SandboxError, ScenarioError) as exc:
        raise click.ClickException(str(exc)) from None


def _runtime(config_path: Path, metrics: Metrics | None = None) -> Runtime:
    from mailunblock.plugin.clock import SystemClock
    from mailunblock.plugin.services import build_runtime

    cfg = _load(config_path)
    try:
        return build_runtime(cfg, SystemClock(), metrics=metrics)
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _existing_store(cfg: Config) -> StateStore:
    """The state store as it is: nothing is created (no folder, database or table)."""
    from mailunblock.plugin.services import open_store

    try:
        return open_store(cfg, existing=True)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _local(config_path: Path) -> tuple[StateStore, PasswordVault]:
    """Only the store and the vault: what ``reveal`` needs on the host (no service secret, nothing created)."""
    from mailunblock.plugin.clock import SystemClock
    from mailunblock.plugin.services import open_vault
    from mailunblock.plugin.vault import VaultError

    cfg = _load(config_path)
    store = _existing_store(cfg)
    try:
        return store, open_vault(cfg, store, SystemClock(), create_key=False)
    except (ConfigError, ValueError, VaultError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@_config_option
@click.option("--once", is_flag=True, help="Run a single cycle and exit (for cron).")
@click.option("--dry-run", is_flag=True,
              help="One cycle that reads everything for real but only prints the writes it would make.")
@click.option("--log-format", type=click.Choice([f.value for f in LogFormat]), default=None,
              help="Log lines as text, or one JSON object each. Default: [log] format, else text.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus /metrics and /healthz on this port. Default: [metrics] port, else off.")
def run(config_path: Path, once: bool, dry_run: bool, log_format: str | None, metrics_port: int | None) -> None:
    """Poll Jira and remediate tickets until SIGTERM/SIGINT.

    Example: mailunblock run --config mailunblock.toml --once -v --log-format json

    Exit codes: 0 stopped cleanly (or, with --once/--dry-run, a healthy cycle), 1 the cycle failed or
    the configuration is invalid, 2 bad option.
    """
    from mailunblock.plugin.logs import use_format
    from mailunblock.plugin.poller import CycleReport, run_forever

    cfg = _load(config_path)
    use_format(LogFormat(log_format or cfg.log.format))
    from mailunblock.plugin.affinity import AffinityError, place

    try:
        place(cfg.poller)  # before any thread starts: they all inherit it
    except AffinityError as exc:
        raise click.ClickException(str(exc)) from None
    port = metrics_port if metrics_port is not None else cfg.metrics.port
    metrics = None
    if port is not None and not (once or dry_run):
        from mailunblock.plugin.clock import SystemClock
        from mailunblock.plugin.metrics import Metrics

        metrics = Metrics(SystemClock(), cfg.poller.interval_seconds)
    runtime = _runtime(config_path, metrics)
    if metrics is not None:
        from mailunblock.plugin.web import serve_in_background

        metrics.watch(runtime.store, runtime.vault)
        listen = f"{cfg.metrics.host}:{port}"
        try:
            served = serve_in_background(metrics.app(), listen)
        except OSError as exc:
            raise click.ClickException(f"metrics {listen}: cannot serve: {exc}") from None
        click.echo(f"metrics on http://{cfg.metrics.host}:{served.port}/metrics (health: /healthz)")
    if dry_run:
        click.echo("DRY RUN: reading Jira, Graph and Exchange for real; no write is made, nothing is stored.")
        runtime = runtime.dry_run(click.echo)
        once = True

    def report(cycle: CycleReport) -> None:
        stamp = f"cycle: {cycle.seen} ticket(s) selected"
        if cycle.error:
            click.echo(f"{stamp}; FAILED: {cycle.error} (retrying next cycle)", err=True)
            return
        click.echo(stamp)
        for line in cycle.advanced:
            click.echo(f"  {line}")
        for key, why in {**cycle.step_failures, **cycle.failed}.items():
            click.echo(f"  {key}: failed: {why}", err=True)
        for key in sorted(cycle.elsewhere):
            click.echo(f"  {key}: another mailunblock is working on it")

    if once:
        cycle = runtime.poller.run_cycle()
        runtime.poller.close()
        report(cycle)
        for job in runtime.jobs():  # cron runs them once per invocation
            job.run()
        click.echo(cycle.summary(), err=not cycle.healthy)
        sys.exit(0 if cycle.healthy else 1)
    if runtime.config.web.enabled:
        from mailunblock.plugin.web import create_reveal_app, serve_in_background

        web = runtime.config.web
        try:
            serve_in_background(create_reveal_app(runtime.vault), web.listen)
        except OSError as exc:
            raise click.ClickException(f"web.listen {web.listen}: cannot serve one-time links: {exc}") from None
        runtime.vault.advertise_links(web.public_url or f"http://{web.listen}")  # served from now on
        click.echo(f"one-time password links served on http://{web.listen}")
    click.echo(f"polling {runtime.config.jira.url} every {runtime.config.poller.interval_seconds:g} s (Ctrl-C stops)")
    from mailunblock.plugin.collector import settle

    settle()  # start-up is done: what it built lives as long as the process
    run_forever(runtime.poller, runtime.config.poller.interval_seconds, report, runtime.jobs())


@main.command()
@_config_option
@click.argument("ticket")
def reveal(config_path: Path, ticket: str) -> None:
    """Print the password mailunblock set for TICKET — once. Hand it over by phone or in person.

    Example: mailunblock reveal HELP-1 --config mailunblock.toml

    Exit codes: 0 printed, 1 no password to reveal (already revealed, expired, unknown ticket), 2 bad usage.
    """
    import getpass

    from mailunblock.plugin.vault import VaultError

    _, vault = _local(config_path)
    try:
        password = vault.reveal(ticket.upper(), revealed_by=f"{getpass.getuser()} (CLI)")
    except VaultError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"New password for {ticket.upper()} (shown once; the user must change it at sign-in):", err=True)
    click.echo(password)


@main.command()
@_config_option
@click.argument("ticket", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON (every ticket, or TICKET).")
def status(config_path: Path, ticket: str | None, as_json: bool) -> None:
    """List the tickets mailunblock knows, with their stage; with TICKET, that ticket's history.

    Example: mailunblock status HELP-1 --config mailunblock.toml

    Exit codes: 0 listed, 1 unknown ticket, configuration or state store problem, 2 bad option.
    """
    from mailunblock.plugin.history import render_history, ticket_history

    store = _existing_store(_load(config_path))
    states = store.all_states()
    if ticket is not None:
        states = [s for s in states if s.issue_key == ticket.upper()]
        if not states:
            raise click.ClickException(f"{ticket.upper()}: mailunblock has no state for this ticket")
    if as_json or ticket is not None:
        stories = [ticket_history(s, store.stage_events(s.issue_key), store.audit(ticket=s.issue_key))
                   for s in states]
        if as_json:
            click.echo(json.dumps(stories[0] if ticket else stories, indent=2))
        else:
            click.echo(render_history(stories[0]), nl=False)
        return
    if not states:
        click.echo("no tickets yet")
    for state in states:
        since = state.history[-1].at.strftime("%Y-%m-%d %H:%M UTC") if state.history else ""
        click.echo(f"{state.issue_key:12} {state.stage!s:22} {state.tenant or '-':12} {since}")


@main.command()
@_config_option
@click.option("--since", default="7d", show_default=True, help="Entries since: 30d, 12h, 2w or a date.")
@click.option("--ticket", default=None, help="Only this ticket's entries.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object per line (for scripts and SIEMs); text: one line per entry.")
def audit(config_path: Path, since: str, ticket: str | None, fmt: str) -> None:
    """Export the append-only audit log: who approved, what was called on which account, the result.

    Example: mailunblock audit --since 7d --format jsonl > audit.jsonl

    Exit codes: 0 exported, 1 configuration or state store problem, 2 bad option.
    """
    store = _existing_store(_load(config_path))
    entries = store.audit(since=_moment(since, datetime.now(UTC), "--since"),
                          ticket=ticket.upper() if ticket else None)
    for entry in entries:
        if fmt == "jsonl":
            click.echo(json.dumps(entry, sort_keys=True))
        else:
            click.echo(" ".join(str(entry[k] or "-") for k in
                                ("at", "issue_key", "action", "target", "actor", "result", "detail")))


def _moment(value: str, now: datetime, option: str) -> datetime:
    """``30d``, ``12h``, ``2w`` (that long before now), or an ISO date or time (UTC unless it says)."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    amount, unit = value[:-1], value[-1:].lower()
    if unit in units and amount.isdigit():
        return now - timedelta(**{units[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 30d, 12h, 2w or a date like 2025-06-01",
                                 param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
@_config_option
@click.option("--since", default="30d", show_default=True, help="Tickets filed since: 30d, 12h, 2w or a date.")
@click.option("--until", "until_", default=None, help="Tickets filed before this date (default: now).")
@click.option("--tenant", default=None, help="Only this tenant's tickets.")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ReportFormat]), default="table",
              show_default=True, help="Output format; html is one self-contained file with charts.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def report(config_path: Path, since: str, until_: str | None, tenant: str | None, fmt: str,
           output: Path | None) -> None:
    """SLA report: outcomes, time per stage, target breaches, per tenant and per approver.

    Example: mailunblock report --since 7d --format html --output sla.html

    Exit codes: 0 report written, 1 configuration or state store problem, 2 bad option.
    """
    from mailunblock.plugin.report import build_report, render
    from mailunblock.plugin.services import sla_policy

    cfg = _load(config_path)
    if tenant is not None and tenant not in {t.name for t in cfg.tenants}:
        raise click.BadParameter(f"no tenant named {tenant!r} in the configuration", param_hint="--tenant")
    now = datetime.now(UTC)
    start = _moment(since, now, "--since")
    end = _moment(until_, now, "--until") if until_ else now
    store = _existing_store(cfg)
    sla = build_report(store.all_states(), sla_policy(cfg), now, start, end, tenant)
    text = render(sla, ReportFormat(fmt))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"{fmt} report of {len(sla.tickets)} ticket(s) written to {output}", err=True)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the sandbox state, config and store here (default: a temporary folder).")
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None) -> None:
    """Show the whole remediation on the sandbox EMULATORS (no configuration needed).

    Example: mailunblock demo --workdir /tmp/demo

    Exit codes: 0 every ticket ended as expected and no password leaked, 1 otherwise, 2 bad option.
    """
    _need_sandbox_extra()
    from mailunblock.plugin.demo import run_demo

    if not verbosity(ctx):
        logging.getLogger().setLevel(logging.ERROR)  # the story is the output; -v shows the logs too

    sys.exit(run_demo(click.echo, workdir))
