"""The command line a user ran, rebuilt from click's parsed parameters, to suggest a rerun.

Only what the user typed (or set through the environment) is repeated; defaults stay implicit.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

import click
from click.core import ParameterSource

TYPED = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _option_name(param: click.Option) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or param.opts)[0]


def rerun_command(
    ctx: click.Context, drop: Iterable[str] = (), add: Iterable[str] = ()
) -> str:
    """`nlbkit <command> ARGS... OPTIONS...` as typed, without the flags in `drop`, with `add` after.

    `drop` and `add` hold option spellings ('--resume') and, in `add`, their values in order.
    """
    drop = set(drop)
    words = ["nlbkit", ctx.info_name or ctx.command.name or ""]
    options: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words += [str(v) for v in value] if param.nargs != 1 else [str(value)]
            continue
        if not isinstance(param, click.Option) or ctx.get_parameter_source(param.name) not in TYPED:
            continue
        name = _option_name(param)
        if name in drop:
            continue
        if param.is_flag:
            options += [name] if value else []
        elif param.multiple:
            for item in value:
                options += [name, str(item)]
        elif value is not None:
            options += [name, str(value)]
    return shlex.join([*words, *options, *add])
