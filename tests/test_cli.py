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
