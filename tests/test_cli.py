import pytest

from nlbkit.cli import COMMANDS
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES, get_spec


def test_help_lists_every_command(nlbkit_cli):
    out = nlbkit_cli("--help").stdout
    for name in COMMANDS:
        assert name in out


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(NlbkitError, match="Did you mean 'mc_maze_small'"):
        get_spec("mc_maze_smal")


def test_registry_holds_the_seven_datasets():
    assert set(DATASET_NAMES) == {
        "mc_maze", "mc_rtt", "area2_bump", "dmfc_rsg", "mc_maze_large", "mc_maze_medium", "mc_maze_small",
    }
    assert get_spec("mc_maze").group_name(20) == "mc_maze_20"
    assert get_spec("mc_maze_small").forward_bins(5) == 40


TYPO_SCRIPT = """
import json, sys
from click.testing import CliRunner
from nlbkit.cli import main
out = {}
for name in ("synth", "train", "sweep", "prepare", "fetch"):
    result = CliRunner().invoke(main, [name, "mc_maze_smal"])
    usage = CliRunner().invoke(main, [name, "--help"]).stdout.splitlines()[0]
    out[name] = [result.exit_code, result.stderr, usage]
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""


def test_every_dataset_argument_answers_a_typo_the_same_way_without_torch():
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", TYPO_SCRIPT], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("torch") is False
    expected = ("error: unknown dataset 'mc_maze_smal'. Did you mean 'mc_maze_small'? Valid names: "
                + ", ".join(DATASET_NAMES) + "\n")
    for name, (code, stderr, usage) in out.items():
        assert (code, stderr) == (1, expected), name
        assert usage.startswith(f"Usage: main {name} [OPTIONS]") and "DATASET" in usage, usage
        assert "mc_maze|" not in usage  # no choice list broken across lines


def test_click_errors_and_ctrl_c_read_like_nlbkit_errors(monkeypatch):
    from click.testing import CliRunner

    from nlbkit.cli import main

    bad = CliRunner().invoke(main, ["prepare", "mc_maze_small", "--bin-ms", "7"])
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[-1] == "error: invalid value for '--bin-ms': '7' is not one of '5', '20'."

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nlbkit.prepare.tensors.prepare", interrupted)
    stopped = CliRunner().invoke(main, ["prepare", "mc_maze_small"])
    assert stopped.exit_code == 1 and stopped.stderr.strip() == "error: interrupted"


def test_bare_nlbkit_shows_the_help_not_an_error():
    from click.testing import CliRunner

    from nlbkit.cli import main

    result = CliRunner().invoke(main, [])
    assert "Typical path:" in result.output and "error:" not in result.output
    assert "runs/mc_maze_small_5ms_val_langevin" in result.output


def test_debug_after_the_sub_command_and_did_you_mean_for_commands():
    from click.testing import CliRunner

    from nlbkit.cli import main

    plain = CliRunner().invoke(main, ["evaluate", "nowhere"])
    assert plain.exit_code == 1
    assert plain.stderr.strip() == "error: nowhere: not a run directory (no run.json)"
    for args in (["--debug", "evaluate", "nowhere"], ["evaluate", "nowhere", "--debug"]):
        debug = CliRunner().invoke(main, args)
        assert isinstance(debug.exception, NlbkitError), args  # raised: the traceback is shown
    typo = CliRunner().invoke(main, ["trian", "mc_maze_small"])
    assert typo.exit_code == 2
    assert typo.stderr.splitlines()[-1] == "error: no such command 'trian'. Did you mean 'train'?"
    nothing_close = CliRunner().invoke(main, ["xyzzy"])
    assert nothing_close.stderr.splitlines()[-1] == "error: no such command 'xyzzy'."
