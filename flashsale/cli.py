"""The `flashsale` command. Each subcommand imports its component lazily so `--help` stays fast."""

from __future__ import annotations

import functools
import sys
from typing import Optional

import typer

from flashsale.settings import load_settings

app = typer.Typer(help="Flash Sale Stockout Radar", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="Start, check and stop the real services (127.0.0.1 only).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")

ProfileOpt = typer.Option(None, "--profile", "-p", help="local or cluster (default: FLASHSALE_PROFILE or local)")


def friendly_errors(fn):
    """Known failures become one line naming the fix, not a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cluster.services import PrerequisiteError
        from flashsale.settings import MissingSecretError

        try:
            return fn(*args, **kwargs)
        except (PrerequisiteError, MissingSecretError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        except RuntimeError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _settings(profile: Optional[str]):
    return load_settings(profile=profile) if profile else load_settings()


@stack_app.command("up")
@friendly_errors
def stack_up(
    profile: Optional[str] = ProfileOpt,
    service: list[str] = typer.Option(None, "--service", "-s", help="only these services (repeatable)"),
):
    """Start (or keep) every service of the profile and wait until all are healthy."""
    from cluster import stack

    statuses = stack.up(_settings(profile), only=service or None, echo=typer.echo)
    _print_table(statuses)


@stack_app.command("down")
@friendly_errors
def stack_down():
    """Stop every service of the run directory; fails if any port is still listening."""
    from cluster import stack

    stack.down(load_settings(), echo=typer.echo)


@stack_app.command("status")
@friendly_errors
def stack_status(profile: Optional[str] = ProfileOpt, as_json: bool = typer.Option(False, "--json")):
    """Each service with its address, pid and health. Exit code 1 if any is unhealthy."""
    from cluster import stack

    statuses = stack.status(_settings(profile))
    if as_json:
        typer.echo(stack.status_json(statuses))
    else:
        _print_table(statuses)
    if not all(x.healthy for x in statuses):
        raise typer.Exit(1)


def _print_table(statuses) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("service", "address", "pid", "health", "detail")
    for x in statuses:
        table.add_row(x.name, x.address, str(x.pid or "-"), "[green]healthy[/]" if x.healthy else "[red]down[/]", x.detail)
    Console(file=sys.stdout).print(table)


if __name__ == "__main__":
    app()
