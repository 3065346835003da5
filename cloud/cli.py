"""The ``aiostack`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from agents.compute.choice import DriverUnavailable
from cloud import logs
from cloud.config import Settings, load_settings
from cloud.gateway import key_repository, make_identity, run_bootstrap
from cloud.node import NodePlan, open_store, run_node, runnable
from cloud.store import migrations
from cloud.store.events import tail_events


def _run(coro: Coroutine[Any, Any, None]) -> None:
    # SIGINT is handled by the node (graceful stop); a second Ctrl-C lands here.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        settings = load_settings(ctx.obj.get("config"), **overrides)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None
    logs.configure(settings.log_format, settings.log_level)
    return settings


state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Local state directory."
)
listen_option = click.option("--listen", metavar="HOST:PORT", help="API gateway address.")
host_option = click.option("--host", help="This node's name (default: the hostname).")
compute_driver_option = click.option(
    "--compute-driver",
    type=click.Choice(["fake", "libvirt", "auto"]),
    help="Hypervisor driver of the compute agent (default auto: libvirt if it answers, else fake).",
)
fake_hosts_option = click.option(
    "--fake-hosts",
    type=click.IntRange(1, 10000),
    help="Fake hypervisors this compute process runs, named HOST-0001... (default 1: HOST).",
)


def node_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of the commands that run actors (``up``, ``run``)."""
    for option in (
        fake_hosts_option,
        compute_driver_option,
        host_option,
        listen_option,
        state_dir_option,
    ):
        command = option(command)
    return command


def _run_node(settings: Settings, plan: NodePlan) -> None:
    try:
        _run(run_node(settings, plan))
    except DriverUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (also AIOSTACK_CONFIG_FILE).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """aiostack: an OpenStack-compatible cloud control plane."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@node_options
@click.pass_context
def up(ctx: click.Context, /, **options: Any) -> None:
    """Run every actor in one process (embedded PostgreSQL and in-process bus by default)."""
    settings = _settings(ctx, **options)
    _run_node(settings, NodePlan(runnable(), bootstrap_if_empty=True))


@main.command()
@click.argument("actor", type=click.Choice(runnable()))
@node_options
@click.pass_context
def run(ctx: click.Context, /, actor: str, **options: Any) -> None:
    """Run one actor (``compute`` takes ``--compute-driver`` and ``--fake-hosts``)."""
    settings = _settings(ctx, **options)
    _run_node(settings, NodePlan([actor]))


@main.command("bootstrap")
@state_dir_option
@listen_option
@click.pass_context
def bootstrap_cmd(ctx: click.Context, state_dir: Path | None, listen: str | None) -> None:
    """Create the admin and demo accounts, roles, region and catalog; write clouds.yaml."""
    settings = _settings(ctx, state_dir=state_dir, listen=listen)

    async def go() -> None:
        async with open_store(settings) as store:
            identity = make_identity(settings, store)
            await identity.start()
            path = await run_bootstrap(settings, identity)
        click.echo(f"wrote {path}")
        click.echo(f"  export OS_CLIENT_CONFIG_FILE={path}")
        click.echo("  openstack --os-cloud aiostack-admin project list")

    _run(go())


@main.group()
def keys() -> None:
    """Fernet token keys."""


@keys.command()
@state_dir_option
@click.pass_context
def rotate(ctx: click.Context, state_dir: Path | None) -> None:
    """Stage a new key and promote the staged one; tokens under the oldest key die."""
    settings = _settings(ctx, state_dir=state_dir)
    repository = key_repository(settings)
    repository.ensure()
    primary = repository.rotate()
    click.echo(f"primary key is now {primary}; keys: {len(repository.keys())}")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@state_dir_option
@click.pass_context
def upgrade(ctx: click.Context, state_dir: Path | None) -> None:
    """Apply pending migrations (also done on every start)."""
    settings = _settings(ctx, state_dir=state_dir)

    async def go() -> None:
        async with open_store(settings) as store, store.pool.acquire() as conn:
            applied = await migrations.upgrade(conn)
            click.echo("\n".join(applied) if applied else "database is up to date")

    try:
        _run(go())
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def events() -> None:
    """The event log."""


@events.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--kind", "pattern", default="#", help="Topic pattern of kinds (* and #).")
@click.option("--limit", "-n", default=20, show_default=True, help="How many past events.")
@state_dir_option
@click.pass_context
def tail(
    ctx: click.Context, follow: bool, pattern: str, limit: int, state_dir: Path | None
) -> None:
    """Print the last events (JSON lines), optionally following new ones."""
    settings = _settings(ctx, state_dir=state_dir)

    async def go() -> None:
        async with open_store(settings) as store:
            async for event in tail_events(store.pool, pattern=pattern, limit=limit, follow=follow):
                click.echo(json.dumps(event, default=str))

    _run(go())


@main.group()
def config() -> None:
    """Configuration."""


@config.command()
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the effective settings, secrets masked."""
    settings = _settings(ctx)
    json.dump(settings.masked(), sys.stdout, indent=2, default=str)
    click.echo()


if __name__ == "__main__":
    main()
