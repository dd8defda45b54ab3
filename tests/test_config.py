import json

import pytest

from nlbkit.config import DATASET_DEFAULTS, build_config, from_dict, to_dict
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES


def test_every_dataset_has_defaults_that_validate():
    assert set(DATASET_DEFAULTS) == set(DATASET_NAMES)
    for name in DATASET_NAMES:
        build_config(name)
    assert build_config("dmfc_rsg").train.lr == 1e-3
    assert build_config("dmfc_rsg").model.damping == 0.7
    assert build_config("mc_maze").train.batch_size == 256


def test_set_overrides_are_typed_dotted_or_bare():
    cfg = build_config("mc_maze_small", overrides=["train.lr=1e-4", "hidden=32", "amp=false", "epochs=7"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.hidden == 32 and isinstance(cfg.model.hidden, int)
    assert cfg.train.amp is False
    assert cfg.train.epochs == 7


def test_config_file_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.002\n  epochs: 9\nmodel.hidden: 16\n")
    cfg = build_config("mc_maze_small", path, ["train.epochs=11"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.hidden) == (0.002, 11, 16)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", r"unknown config key 'train.lrr'; did you mean train.lr"),
        ("hiden=3", r"did you mean model.hidden"),
        ("model.hidden=abc", r"'model.hidden' takes an integer, not 'abc'"),
        ("train.amp=maybe", r"'train.amp' takes a boolean"),
        ("lr", r"--set expects key=value"),
        ("model.channels=3", r"multiple of channels"),
    ],
)
def test_bad_overrides_fail_in_one_line(override, message):
    with pytest.raises(NlbkitError, match=message) as info:
        build_config("mc_maze_small", overrides=[override])
    assert "\n" not in str(info.value)


def test_bad_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(NlbkitError, match=r"bad.yaml: unknown config key 'train.learning_rate'"):
        build_config("mc_maze_small", path)


def test_round_trip_through_json():
    cfg = build_config("area2_bump", overrides=["hidden=40", "train.seed=5"])
    again = from_dict(json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


def test_cli_set_error_is_one_line(nlbkit_cli):
    proc = nlbkit_cli("train", "mc_maze_small", "--set", "train.lrr=1", "--show-config", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: unknown config key 'train.lrr'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bins_per_step_auto_makes_a_20_ms_step():
    from nlbkit.config import resolve_for_bin

    assert build_config("mc_maze_small").model.bins_per_step == 0
    assert resolve_for_bin(build_config("mc_maze_small"), 5).model.bins_per_step == 4
    assert resolve_for_bin(build_config("mc_maze_small"), 20).model.bins_per_step == 1
    fixed = build_config("mc_maze_small", overrides=["model.bins_per_step=2"])
    assert resolve_for_bin(fixed, 5).model.bins_per_step == 2


def test_presets_sit_between_the_dataset_defaults_and_the_overrides(tmp_path):
    from nlbkit.config import PRESETS

    cpu = build_config("mc_maze", preset="cpu")
    plain = build_config("mc_maze")
    assert (plain.model.hidden, plain.train.batch_size, plain.train.epochs) == (280, 256, 2000)
    assert (cpu.model.hidden, cpu.train.batch_size, cpu.train.epochs) == (64, 64, 150)
    assert cpu.model.cd_rate == plain.model.cd_rate  # what the preset leaves alone stays the dataset's
    assert build_config("mc_maze", overrides=["train.epochs=7"], preset="cpu").train.epochs == 7
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"hidden": 32}}))
    assert build_config("mc_maze", config, preset="cpu").model.hidden == 32
    for name, settings in PRESETS.items():  # every preset is a valid configuration of every dataset
        for dataset in DATASET_NAMES:
            cfg = to_dict(build_config(dataset, preset=name))
            for key, value in settings.items():
                section, field = key.split(".")
                assert cfg[section][field] == value, (name, dataset, key)
    with pytest.raises(NlbkitError, match="unknown preset 'gpu'; presets: cpu"):
        build_config("mc_maze", preset="gpu")


def test_cli_preset_shows_in_the_resolved_config(nlbkit_cli):
    shown = json.loads(nlbkit_cli("train", "mc_maze", "--preset", "cpu", "--show-config").stdout)
    assert (shown["model"]["hidden"], shown["train"]["batch_size"], shown["train"]["epochs"]) == (64, 64, 150)
    bad = nlbkit_cli("train", "mc_maze", "--preset", "fast", check=False)
    assert bad.returncode == 2 and "'fast' is not 'cpu'" in bad.stderr
