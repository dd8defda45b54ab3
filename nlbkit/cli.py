"""The `nlbkit` command: a thin click layer over functions that tests and notebooks call directly.

Each sub-command lives in `nlbkit/commands/<name>.py` (dashes as underscores) as a click command
called `command`, and is imported only when it runs, so `nlbkit --help` stays fast (torch is not
imported for it).
"""

from __future__ import annotations

import difflib
import importlib
import sys

import click

from nlbkit import __version__
from nlbkit.errors import NlbkitError

COMMANDS: dict[str, str] = {
    "fetch": "Download NLB NWB files from DANDI (resumable, verified).",
    "synth": "Generate a dataset in the exact NLB layout (Lorenz-driven spikes).",
    "prepare": "Build train/val/test tensors from the NWB files, as nlb_tools does.",
    "train": "Train LangevinFlow (or a baseline: smoothing, GPFA) and score it.",
    "train-all": "Train every dataset x bin of a leaderboard as Ray tasks (resumable).",
    "cv": "Cross-validate LangevinFlow and smoothing on a file of train trials.",
    "predict": "Write rates for an input tensor file from a trained run.",
    "evaluate": "Score runs with the official NLB metrics.",
    "leaderboard": "Rank scored runs among the published NLB'21 results.",
    "submit": "Merge runs into one EvalAI submission file.",
    "validate": "Check a submission file before upload.",
    "bench": "Benchmarks: nlbkit against nlb_tools, side by side.",
    "sweep": "Search LangevinFlow's hyper-parameters on Ray Tune.",
    "ensemble": "Average the rates of several runs into a new run.",
    "report": "PNG figures of a run: curves, latents, rates, PSTHs, decoding.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name in COMMANDS or name.startswith("-"):
            return super().resolve_command(ctx, args)
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise click.UsageError(f"no such command '{name}'.{hint}", ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"nlbkit.commands.{name.replace('-', '_')}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _sentence_start(message: str) -> str:
    """click's messages begin with a capital ('Invalid value ...'); nlbkit's with a lower-case word."""
    return message[:1].lower() + message[1:]


def _debug_first(args: list[str]) -> list[str]:
    """`--debug` is an option of `nlbkit` itself; given after the sub-command it means the same."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


class DebuggableGroup(LazyGroup):
    """Turns NlbkitError (and file errors) into one line and a non-zero exit, unless --debug.

    click's own errors (a bad option, a missing argument) and Ctrl-C outside a command that handles
    it are printed in the same `error: ...` form.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = _debug_first(sys.argv[1:] if args is None else list(args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as exc:  # a bare `nlbkit`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
                click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
            click.echo(f"error: {_sentence_start(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {_sentence_start(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            # click turns both Ctrl-C and an EOFError (a file or input that ended early) into Abort
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, EOFError):
                click.echo(f"error: unexpected end of input ({cause or 'EOFError'})", err=True)
            else:
                click.echo("error: interrupted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (NlbkitError, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=DebuggableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="nlbkit")
def main(debug: bool) -> None:
    """nlbkit: from nothing to a Neural Latents Benchmark submission.

    \b
    Typical path:
      nlbkit fetch mc_maze_small        # or: nlbkit synth mc_maze_small (no download)
      nlbkit prepare mc_maze_small --bin-ms 5
      nlbkit train mc_maze_small                     # writes runs/mc_maze_small_5ms_val_langevin
      nlbkit evaluate runs/mc_maze_small_5ms_val_langevin runs/mc_maze_small_5ms_val_smoothing
      nlbkit train mc_maze_small --phase test
      nlbkit submit runs/mc_maze_small_5ms_test_langevin
    """
