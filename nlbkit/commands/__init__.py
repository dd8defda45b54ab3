"""One module per `nlbkit` sub-command, each exposing a click command named `command`."""

from __future__ import annotations

import click

from nlbkit.paths import check_inside_workdir, check_plain_name


def plain_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a --tag/--name must be one plain path component (one-line error otherwise)."""
    return None if value is None else check_plain_name(value, _option(param))


def inside_workdir(ctx: click.Context, param: click.Parameter, value):
    """Click callback: a relative --run-dir/--output must not climb out of the working directory."""
    if value is None:
        return None
    check_inside_workdir(value, _option(param))
    return value


def _option(param: click.Parameter) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])
