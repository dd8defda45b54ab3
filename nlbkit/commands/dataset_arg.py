"""The DATASET argument of every command: one type, one error with the closest valid name.

A typo raises NlbkitError, which the CLI prints as one line (`error: unknown dataset ... Did you
mean ...?`) and exit status 1, the same for every command. Torch-free, so it answers at once.
"""

from __future__ import annotations

import click

from nlbkit.nlb.datasets import DATASET_NAMES, get_spec


class DatasetName(click.ParamType):
    """An NLB dataset name (or 'all' where `allow_all`); a typo fails naming the closest name."""

    name = "dataset"

    def __init__(self, allow_all: bool = False) -> None:
        self.allow_all = allow_all

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DATASET|all" if self.allow_all else "DATASET"

    def convert(self, value, param, ctx) -> str:
        if self.allow_all and value == "all":
            return value
        return get_spec(str(value)).name  # NlbkitError naming the closest name

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        names = [*DATASET_NAMES, "all"] if self.allow_all else list(DATASET_NAMES)
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]


DATASET = DatasetName()
DATASET_OR_ALL = DatasetName(allow_all=True)
