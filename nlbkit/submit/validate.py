"""Checking a submission file before upload, and saying exactly what is wrong with it.

nlb_tools' `evaluate` silently skips a misnamed group and fails on the first NaN with an assertion;
`validate_submission` lists every problem: group names (with the closest valid one), keys, dtypes,
shapes against the tensors and targets, and NaN, inf or negative rates inside the windows the
metrics read. Where the targets are NaN (dmfc_rsg's front padding before `set`, mc_rtt's bins
without behaviour), a NaN rate is allowed, as in nlb_tools.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.nlb.h5io import load_test_target, load_val_target, open_h5, read_h5_groups
from nlbkit.nlb.keys import EVAL_GROUP, RATE_KEYS, TRAIN_GROUP, rate_shapes
from nlbkit.paths import tensors_path
from nlbkit.scoring.metrics import evaluate
from nlbkit.submit.evalai import GROUP_NAMES

Shape = tuple[int, ...]


@dataclass
class ValidationReport:
    """The outcome of `validate_submission`: errors make the file unfit for upload."""

    path: Path
    phase: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    scores: list[dict[str, dict[str, float]]] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def group_of(name: str) -> tuple[str, int]:
    """(dataset, bin_ms) of a valid group name."""
    if name.endswith("_20"):
        return name[:-3], 20
    return name, 5


def suggest_group(name: str) -> str:
    """' Did you mean ...?' for a misnamed group, or ''."""
    normal = name.strip().lower().replace("-", "_").replace(" ", "_")
    if normal in GROUP_NAMES:
        return f" Did you mean '{normal}'?"
    close = difflib.get_close_matches(normal, GROUP_NAMES, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def expected_shapes_from_tensors(tensors_file: Path, dataset: str, bin_ms: int, phase: str) -> dict:
    """Shapes of the six arrays that the tensor file of `prepare` implies for `phase`."""
    with h5py.File(tensors_file, "r") as h5:
        train, evals = h5.get(TRAIN_GROUP[phase]), h5.get(EVAL_GROUP[phase])
        if train is None or evals is None or "train_spikes_heldin" not in train:
            return {}
        n_train, bins, n_in = train["train_spikes_heldin"].shape
        n_out = train["train_spikes_heldout"].shape[2]
        fwd = get_spec(dataset).forward_bins(bin_ms)
        n_eval, eval_bins = evals["eval_spikes_heldin"].shape[:2]
    return rate_shapes(n_train, bins, n_in, n_out, n_eval, eval_bins, fwd)


def expected_shapes_from_target(target: dict[str, np.ndarray], dataset: str) -> dict:
    """Shapes implied by eval targets (train rates only where the targets hold 3-D behaviour)."""
    n_eval, eval_bins, n_out = target["eval_spikes_heldout"].shape
    fwd, n_in = target["eval_spikes_heldin_forward"].shape[1:]
    shapes = rate_shapes(0, 0, n_in, n_out, n_eval, eval_bins, fwd)
    behavior = target.get("train_behavior")
    if get_spec(dataset).decodes_velocity and behavior is not None and behavior.ndim == 3:
        shapes["train_rates_heldin"] = (behavior.shape[0], behavior.shape[1], n_in)
        shapes["train_rates_heldout"] = (behavior.shape[0], behavior.shape[1], n_out)
    else:
        del shapes["train_rates_heldin"], shapes["train_rates_heldout"]
    return shapes


def evaluated_masks(dataset: str, target: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per rate key, a mask broadcastable to the array: True where some metric reads the rate."""
    observed = ~np.isnan(target["eval_spikes_heldout"].astype(float))
    masks = {
        "eval_rates_heldout": observed,
        "eval_rates_heldin_forward": ~np.isnan(target["eval_spikes_heldin_forward"].astype(float)),
        "eval_rates_heldout_forward": ~np.isnan(target["eval_spikes_heldout_forward"].astype(float)),
    }
    if not get_spec(dataset).decodes_velocity:
        eval_rows = observed[..., :1]  # tp corr reads all neurons in the set..go bins
    else:
        eval_rows = ~np.isnan(target["eval_behavior"].astype(float))[..., :1]
        train_rows = ~np.isnan(target["train_behavior"].astype(float))[..., :1]
        masks["train_rates_heldin"] = masks["train_rates_heldout"] = train_rows
    if "psth" in target:
        eval_rows = eval_rows | _psth_rows(target, observed.shape[:2])[..., None]
    masks["eval_rates_heldin"] = eval_rows
    masks["eval_rates_heldout"] = masks["eval_rates_heldout"] | eval_rows
    return masks


def _psth_rows(target: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(trials, bins): bins of each eval trial that its condition's PSTH reads, jitter undone."""
    n_trials, n_bins = shape
    jitter = np.asarray(target.get("eval_jitter", np.zeros(n_trials)), dtype=np.int64)
    rows = np.zeros(shape, dtype=bool)
    psth_kept = ~np.isnan(target["psth"][:, :, 0].astype(float))
    for cond, idx in enumerate(target["eval_cond_idx"]):
        for trial in np.asarray(idx, dtype=np.int64):
            # The shifted trial's bin t holds the rate of bin t - jitter.
            read = np.flatnonzero(psth_kept[cond]) - jitter[trial]
            rows[trial, read[(read >= 0) & (read < n_bins)]] = True
    return rows


def _front_padding_only(array: np.ndarray) -> bool:
    """True if each trial's NaNs are whole bins at its start (dmfc_rsg's padding)."""
    nan_rows = np.isnan(array).all(axis=-1)
    partial = np.isnan(array).any(axis=-1) & ~nan_rows
    prefix = np.cumprod(nan_rows, axis=1).astype(bool)
    return not partial.any() and bool((nan_rows == prefix).all())


def _trials_note(bad: np.ndarray) -> str:
    trials = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
    shown = ", ".join(map(str, trials[:5])) + (", ..." if len(trials) > 5 else "")
    return f"{int(bad.sum())} values in trials {shown}"


def check_values(name: str, key: str, array: np.ndarray, mask: np.ndarray | None) -> list[str]:
    """NaN/inf inside the evaluated window (`mask`; None: the whole array), negatives anywhere."""
    problems = []
    inf = np.isinf(array)
    if inf.any():
        problems.append(f"{name}/{key}: infinite rates ({_trials_note(inf)})")
    negative = array < 0
    if negative.any():
        problems.append(f"{name}/{key}: negative rates ({_trials_note(negative)})")
    nan = np.isnan(array) if mask is None else np.isnan(array) & mask
    if nan.any():
        problems.append(f"{name}/{key}: NaN rates inside the evaluated window ({_trials_note(nan)})")
    return problems


def _check_group(name: str, arrays: dict, expected: list[tuple[str, dict]], masks: dict | None,
                 report: ValidationReport) -> None:
    dataset, bin_ms = group_of(name)
    missing = [k for k in RATE_KEYS if k not in arrays]
    observed, forward = arrays.get("eval_rates_heldin"), arrays.get("eval_rates_heldin_forward")
    if observed is not None and forward is not None and observed.ndim == forward.ndim == 3:
        try:  # a group of another bin width's rates ('mc_maze_20' holding 5 ms bins)
            get_spec(dataset).check_bins(name, bin_ms, observed.shape[1], forward.shape[1])
        except NlbkitError as exc:
            report.errors.append(str(exc))
    if missing:
        report.errors.append(f"{name}: missing {', '.join(missing)}")
    extra = sorted(set(arrays) - set(RATE_KEYS))
    if extra:
        report.warnings.append(f"{name}: extra keys ignored by the scorer: {', '.join(extra)}")
    for key in (k for k in RATE_KEYS if k in arrays):
        array = arrays[key]
        if not np.issubdtype(array.dtype, np.floating):
            report.errors.append(f"{name}/{key}: dtype {array.dtype}, expected float32")
            continue
        if array.ndim != 3:
            report.errors.append(f"{name}/{key}: shape {array.shape}, expected (trials, bins, neurons)")
            continue
        wanted: dict[tuple, list[str]] = {}  # expected shape -> the sources that say so
        for source, shapes in expected:
            if key in shapes and tuple(array.shape) != tuple(shapes[key]):
                wanted.setdefault(tuple(shapes[key]), []).append(source)
        for shape, sources in wanted.items():  # one line per shape, however many sources agree
            report.errors.append(f"{name}/{key}: shape {array.shape}, expected {shape} (from "
                                 f"{' and '.join(sources)})")
        bad_shape = bool(wanted)
        report.errors.extend(check_values(name, key, array, _window(dataset, key, masks, bad_shape)))
        if masks is None and get_spec(dataset).eval_front_padded and key.startswith("eval_rates_held") \
                and not key.endswith("forward") and not _front_padding_only(array):
            report.errors.append(f"{name}/{key}: NaN rates other than whole bins before set")


NOWHERE = np.zeros((1, 1, 1), dtype=bool)


def _window(dataset: str, key: str, masks: dict | None, bad_shape: bool) -> np.ndarray | None:
    """Where NaN is an error: the targets' evaluated window; without targets, the whole array,
    except the train rates of datasets scored without a velocity decoder (dmfc_rsg: unscored) and
    front-padded eval rates (checked apart)."""
    if bad_shape:
        return NOWHERE
    if masks is not None:
        return masks.get(key, NOWHERE)
    spec = get_spec(dataset)
    unscored_train = key.startswith("train") and not spec.decodes_velocity
    padded_eval = key.startswith("eval") and spec.eval_front_padded
    if not key.endswith("forward") and (unscored_train or padded_eval):
        return NOWHERE
    return None


def validate_submission(
    path: str | os.PathLike,
    phase: str | None = None,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
    score: bool = True,
    subset: bool = False,
) -> ValidationReport:
    """Check a submission file; in the val phase (or with test targets) also score it.

    Shapes are checked against `data/<dataset>/tensors_<bin>ms.h5` where it exists, and against
    the eval targets (val: that file's `val_target`; test: `targets_file`) where available.
    `subset`: the file holds some datasets on purpose, so an incomplete set of the scaled mc_maze
    groups (one leaderboard entry) is not warned about.
    """
    path = Path(path)
    with open_h5(path) as h5:
        top = {key: isinstance(h5[key], h5py.Group) for key in h5.keys()}
        file_phase = h5.attrs.get("phase")
    phase = phase or (str(file_phase) if file_phase in ("val", "test") else "test")
    report = ValidationReport(path, phase)
    for key, is_group in top.items():
        if key not in GROUP_NAMES:
            report.errors.append(f"'{key}' is not an NLB group name.{suggest_group(key)} "
                                 f"Valid names: {', '.join(GROUP_NAMES)}")
        elif not is_group:
            report.errors.append(f"'{key}' is a dataset; it must be a group of the six rate arrays")
    report.groups = [k for k, is_group in top.items() if is_group and k in GROUP_NAMES]
    if not report.groups:
        report.errors.append("no NLB group in the file")
    if not subset:
        _warn_partial_scaling(report)
    submission = read_h5_groups(path, report.groups)
    targets = {}
    for name in report.groups:
        targets.update(_check_one(name, submission[name], phase, data_dir, targets_file, report))
    if score and report.ok and targets:
        report.scores = evaluate(targets, {g: submission[g] for g in targets})
    return report


def _check_one(name, arrays, phase, data_dir, targets_file, report) -> dict:
    """Check one group; returns {name: targets} when targets were found for it."""
    dataset, bin_ms = group_of(name)
    expected: list[tuple[str, dict]] = []
    target = None
    tensors_file = tensors_path(dataset, bin_ms, data_dir)
    if tensors_file.exists():
        shapes = expected_shapes_from_tensors(tensors_file, dataset, bin_ms, phase)
        expected.append((str(tensors_file), shapes))
        if phase == "val":
            target = load_val_target(tensors_file)
    if phase == "test" and targets_file is not None:
        target = load_test_target(targets_file, name)
    if target is not None:
        expected.append(("the eval targets", expected_shapes_from_target(target, dataset)))
    if not expected:
        report.warnings.append(f"{name}: shapes not checked ({tensors_file} not found)")
    masks = evaluated_masks(dataset, target) if target is not None else None
    _check_group(name, arrays, expected, masks, report)
    return {name: target} if target is not None else {}


def _warn_partial_scaling(report: ValidationReport) -> None:
    for suffix in ("", "_20"):
        scaled = [f"mc_maze_{size}{suffix}" for size in ("large", "medium", "small")]
        present = [g for g in scaled if g in report.groups]
        if present and len(present) < 3:
            missing = sorted(set(scaled) - set(present))
            report.warnings.append(
                f"the scaled mc_maze sets share one leaderboard entry; missing {', '.join(missing)}"
            )
