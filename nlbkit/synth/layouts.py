"""Session layouts of the generated datasets: when trials happen, their events and conditions.

One function per task family (maze reaching, random-target reaching, area2 bump, RSG timing)
lays out a whole session in integer milliseconds: every trial of every split (test trials
included: the train file later shows their time as unobserved gaps, as in the NLB files), the
latent epochs, and the spans that must stay observed so that nlb_tools can cut every train and
val window (it drops rows with NaN there). Times in `trials` are seconds on the 1 ms grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlbkit.nlb.datasets import DatasetSpec
from nlbkit.synth.latents import attractor_points, lorenz_path

SCALES = ("small", "full")
# (train, val, test) trials and (held-in, held-out) units at --scale small.
_SMALL_TRIALS = {"mc_rtt": (48, 16, 16), "dmfc_rsg": (48, 16, 16)}
_SMALL_UNITS = {"area2_bump": (20, 8), "dmfc_rsg": (20, 8)}


@dataclass(frozen=True)
class BehaviorSeries:
    """A 1 kHz TimeSeries of `processing/behavior`, a linear read-out of the latents."""

    name: str
    columns: tuple[str, ...]
    unit: str
    description: str
    kind: str = "velocity"  # 'velocity' (read-out), 'position' (its integral), 'target' (steps)
    source: str | None = None  # the velocity series a position integrates


@dataclass
class Layout:
    trials: dict[str, np.ndarray]  # whole session, in time order, every split
    train_columns: tuple[str, ...]  # trial columns of the train file, in file order
    test_columns: tuple[str, ...]
    column_descriptions: dict[str, str]
    epoch_start_ms: np.ndarray  # (E,) int64
    epoch_len_ms: np.ndarray  # (E,) int64
    epoch_init: np.ndarray  # (E, 3) raw Lorenz states
    session_ms: int
    required_ms: np.ndarray  # (R, 2) spans of the train file that stay observed
    test_window_ms: np.ndarray  # (n_test, 2) session spans copied into the test file
    free_gap_ms: np.ndarray  # (G, 2) extra unobserved spans (between trials)
    behavior: tuple[BehaviorSeries, ...] = ()
    behavior_span_ms: tuple[int, int] | None = None  # None: the whole session
    n_heldin: int = 0
    n_heldout: int = 0
    taper_ms: int = 80  # latents fade in and out at epoch edges; 0 for back-to-back epochs

    @property
    def split(self) -> np.ndarray:
        return self.trials["split"]


def trial_counts(spec: DatasetSpec, scale: str) -> tuple[int, int, int]:
    if scale == "full":
        return spec.typical_trials
    return _SMALL_TRIALS.get(spec.name, (40, 12, 16))


def unit_counts(spec: DatasetSpec, scale: str) -> tuple[int, int]:
    if scale == "full":
        return spec.typical_heldin, spec.typical_heldout
    return _SMALL_UNITS.get(spec.name, (24, 8))


def _splits(counts: tuple[int, int, int], n_none: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.array(["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2] + ["none"] * n_none)
    return labels[rng.permutation(len(labels))]


def _u(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=n).astype(np.int64)


def _sec(ms: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(ms, dtype=np.float64) / 1000.0, 3)


def _sec_or_nan(ms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, _sec(ms), np.nan)


def _condition_inits(cond: np.ndarray, n_cond: int, rng: np.random.Generator, noise: float = 0.05):
    """Raw Lorenz initial states: one attractor point per condition, jittered per trial."""
    centres = attractor_points(n_cond, rng)
    return centres[cond] + rng.normal(0.0, noise, size=(len(cond), 3))


def _chain(durations: np.ndarray, gaps: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (ms) of back-to-back trials separated by `gaps`."""
    starts = first + np.concatenate([[0], np.cumsum(durations[:-1] + gaps[1:])])
    return starts, starts + durations


def _iti_gaps(stops: np.ndarray, starts: np.ndarray, rng: np.random.Generator, frac: float) -> np.ndarray:
    """Unobserved spans in some inter-trial intervals, with edges off the millisecond grid."""
    prev_stop, next_start = stops[:-1], starts[1:]
    pick = (rng.random(len(prev_stop)) < frac) & (next_start - prev_stop > 40)
    lo = prev_stop[pick] + 5 + rng.random(pick.sum()) * 10
    hi = next_start[pick] - 5 - rng.random(pick.sum()) * 10
    return np.stack([lo, hi], axis=1)


def _behavior_maze() -> tuple[BehaviorSeries, ...]:
    return (
        BehaviorSeries("cursor_pos", ("x", "y"), "mm", "Cursor position", "position", "hand_vel"),
        BehaviorSeries("eye_pos", ("x", "y"), "mm", "Eye position", "position", "eye_vel"),
        BehaviorSeries("hand_pos", ("x", "y"), "mm", "Hand position", "position", "hand_vel"),
        BehaviorSeries("hand_vel", ("x", "y"), "mm/s", "Hand velocity, from the hand position"),
    )


def maze_layout(spec: DatasetSpec, scale: str, rng: np.random.Generator) -> Layout:
    """Delayed centre-out reaching through a maze: mc_maze and its scaled versions."""
    counts = trial_counts(spec, scale)
    n_none = max(2, round(0.03 * sum(counts)))
    split = _splits(counts, n_none, rng)
    n = len(split)
    if scale == "full":
        n_types, n_versions = (36, 3) if spec.name == "mc_maze" else (9, 3)
    else:
        n_types, n_versions = 3, 2
    trial_type = rng.integers(1, n_types + 1, size=n)
    trial_version = rng.integers(0, n_versions, size=n)
    cond = (trial_type - 1) * n_versions + trial_version
    target_on = _u(rng, 200, 500, n)
    delay = _u(rng, 0, 1000, n) if scale == "full" else _u(rng, 0, 300, n)
    rt = _u(rng, 250, 450, n)
    post = _u(rng, 1000, 1800, n) if scale == "full" else _u(rng, 750, 950, n)
    onset_rel = target_on + delay + rt
    starts, stops = _chain(onset_rel + post, _u(rng, 100, 600, n), first=300)
    onset = starts + onset_rel
    none = split == "none"
    trials = {
        "start_time": _sec(starts),
        "stop_time": _sec(stops),
        "trial_type": trial_type.astype(np.int64),
        "trial_version": trial_version.astype(np.int64),
        "maze_id": (1000 + cond).astype(np.int64),
        "success": ~none,
        "target_on_time": _sec(starts + target_on),
        "go_cue_time": _sec(starts + target_on + delay),
        "move_onset_time": _sec(onset),
        "rt": rt,
        "delay": delay,
        "num_targets": np.where(trial_version == 0, 1, 3).astype(np.int64),
        "active_target": rng.integers(0, 3, size=n).astype(np.int64),
        "split": split,
    }
    heldin, heldout = unit_counts(spec, scale)
    return Layout(
        trials=trials,
        train_columns=tuple(trials),
        test_columns=("start_time", "stop_time", "move_onset_time", "split"),
        column_descriptions=_MAZE_DESCRIPTIONS,
        epoch_start_ms=onset - 350,
        epoch_len_ms=np.full(n, 1100, dtype=np.int64),
        epoch_init=_condition_inits(cond, n_types * n_versions, rng),
        session_ms=int(stops[-1] + 500),
        required_ms=np.stack([onset - 252, onset + 652], axis=1)[np.isin(split, ["train", "val"])],
        test_window_ms=np.stack([onset - 250, onset + 450], axis=1)[split == "test"],
        free_gap_ms=_iti_gaps(stops, starts, rng, frac=0.08),
        behavior=_behavior_maze(),
        n_heldin=heldin,
        n_heldout=heldout,
    )


def rtt_layout(spec: DatasetSpec, scale: str, rng: np.random.Generator) -> Layout:
    """Continuous random-target reaching cut into 600 ms segments (some overlapping): mc_rtt."""
    counts = trial_counts(spec, scale)
    split = _splits(counts, 0, rng)
    n = len(split)
    step = np.where(rng.random(n) < 0.15, _u(rng, 450, 599, n), 600)
    block_len = 20 if scale == "full" else 8
    breaks = np.where(np.arange(n) % block_len == 0, _u(rng, 500, 2500, n), 0)
    breaks[0] = 0
    starts = 300 + np.cumsum(np.concatenate([[0], step[:-1]]) + breaks)
    stops = starts + 600
    # One continuous trajectory, integrated in 1 s epochs started where the previous one ends.
    n_epochs = -(-int(stops[-1] + 1000) // 1000)
    session_ms = n_epochs * 1000
    inits = lorenz_path(attractor_points(1, rng)[0], n_epochs * 1000, every=1000)
    keep = np.isin(split, ["train", "val"])
    required = np.stack([starts - 2, starts + 802], axis=1)[keep]
    br_idx = np.flatnonzero(breaks > 0)
    gap_lo = stops[br_idx - 1] + 200 + 5 + rng.random(len(br_idx)) * 10
    gap_hi = starts[br_idx] - 5 - rng.random(len(br_idx)) * 10
    gaps = np.stack([gap_lo, gap_hi], axis=1)[(gap_hi > gap_lo) & (rng.random(len(br_idx)) < 0.6)]
    heldin, heldout = unit_counts(spec, scale)
    # The behaviour covers every train and val window, but not the whole session.
    span = (int(required[:, 0].min()) - 40, int(required[:, 1].max()) + 40)
    trials = {"start_time": _sec(starts), "stop_time": _sec(stops), "split": split}
    return Layout(
        trials=trials,
        train_columns=tuple(trials),
        test_columns=tuple(trials),
        column_descriptions={},
        epoch_start_ms=np.arange(n_epochs, dtype=np.int64) * 1000,
        epoch_len_ms=np.full(n_epochs, 1000, dtype=np.int64),
        epoch_init=inits,
        session_ms=session_ms,
        required_ms=required,
        test_window_ms=np.stack([starts, starts + 600], axis=1)[split == "test"],
        free_gap_ms=gaps,
        behavior=(
            BehaviorSeries("cursor_pos", ("x", "y"), "mm", "Cursor position", "position", "finger_vel"),
            BehaviorSeries("finger_pos", ("x", "y", "z"), "cm", "Finger position", "position", "finger_vel"),
            BehaviorSeries("finger_vel", ("x", "y"), "cm/s", "Finger velocity"),
            BehaviorSeries("target_pos", ("x", "y"), "mm", "Target position", "target"),
        ),
        behavior_span_ms=span,
        n_heldin=heldin,
        n_heldout=heldout,
        taper_ms=0,
    )


def area2_layout(spec: DatasetSpec, scale: str, rng: np.random.Generator) -> Layout:
    """Centre-out reaching with mechanical bumps during centre hold: area2_bump."""
    counts = trial_counts(spec, scale)
    split = _splits(counts, max(1, round(0.02 * sum(counts))), rng)
    n = len(split)
    n_dirs = 8 if scale == "full" else 4
    cond_dir = rng.integers(0, n_dirs, size=n) * (360 // n_dirs)
    bump = rng.random(n) < 0.35
    cond = (cond_dir // (360 // n_dirs)) * 2 + bump
    target_on = _u(rng, 150, 400, n)
    cue = target_on + _u(rng, 300, 700, n)  # go cue, or the bump on centre-hold-bump trials
    onset_rel = cue + np.where(bump, _u(rng, 20, 60, n), _u(rng, 150, 300, n))
    starts, stops = _chain(onset_rel + _u(rng, 800, 1300, n), _u(rng, 100, 500, n), first=300)
    onset = starts + onset_rel
    trials = {
        "start_time": _sec(starts),
        "stop_time": _sec(stops),
        "result": np.where(split == "none", "F", "R"),
        "ctr_hold_bump": bump,
        "bump_dir": np.where(bump, cond_dir.astype(np.float64), np.nan),
        "cond_dir": cond_dir.astype(np.float64),
        "target_on_time": _sec(starts + target_on),
        "go_cue_time": _sec_or_nan(starts + cue, ~bump),
        "bump_time": _sec_or_nan(starts + cue, bump),
        "move_onset_time": _sec(onset),
        "split": split,
    }
    heldin, heldout = unit_counts(spec, scale)
    return Layout(
        trials=trials,
        train_columns=tuple(trials),
        test_columns=("start_time", "stop_time", "move_onset_time", "split"),
        column_descriptions=_AREA2_DESCRIPTIONS,
        epoch_start_ms=onset - 300,
        epoch_len_ms=np.full(n, 1100, dtype=np.int64),
        epoch_init=_condition_inits(cond, n_dirs * 2, rng),
        session_ms=int(stops[-1] + 500),
        required_ms=np.stack([onset - 122, onset + 702], axis=1)[np.isin(split, ["train", "val"])],
        test_window_ms=np.stack([onset - 100, onset + 500], axis=1)[split == "test"],
        free_gap_ms=_iti_gaps(stops, starts, rng, frac=0.05),
        behavior=(
            BehaviorSeries("force", ("x", "y", "z"), "N", "Force on the handle", "velocity"),
            BehaviorSeries("hand_pos", ("x", "y"), "cm", "Hand position", "position", "hand_vel"),
            BehaviorSeries("hand_vel", ("x", "y"), "cm/s", "Hand velocity"),
        ),
        n_heldin=heldin,
        n_heldout=heldout,
    )


def rsg_layout(spec: DatasetSpec, scale: str, rng: np.random.Generator) -> Layout:
    """Ready-set-go interval reproduction: dmfc_rsg. Train windows of short trials overlap."""
    counts = trial_counts(spec, scale)
    split = _splits(counts, 0, rng)
    n = len(split)
    short_set = np.array([480, 560, 640, 720, 800] if scale == "full" else [480, 800])
    long_set = np.array([800, 900, 1000, 1100, 1200] if scale == "full" else [800, 1200])
    is_eye = rng.random(n) < 0.5
    theta = np.where(rng.random(n) < 0.5, 0.0, 180.0)
    is_short = rng.random(n) < 0.5
    k = rng.integers(0, len(short_set), size=n)
    ts = np.where(is_short, short_set[k], long_set[k])
    tp = np.round(ts * (1.0 + rng.normal(0.0, 0.08, size=n))).astype(np.int64)
    outlier = rng.random(n) < 0.06
    tp = np.where(outlier, np.round(ts * rng.choice([0.4, 1.9], size=n)), tp).astype(np.int64)
    fix = _u(rng, 200, 500, n)
    post = _u(rng, 150, 400, n)
    starts, stops = _chain(fix + ts + tp + post, _u(rng, 50, 400, n), first=1800)
    ready = starts + fix
    set_ms = ready + ts
    go = set_ms + tp
    cond = ((is_eye * 2 + (theta > 0)) * 2 + is_short) * len(short_set) + k
    # Epochs from just before ready to past the latest forward window; clipped, never overlapping.
    ep_start = ready - 100
    ep_stop = go + 550
    ep_start[1:] = np.maximum(ep_start[1:], ep_stop[:-1])
    keep = np.isin(split, ["train", "val"])
    required = np.stack([go - 1502, go + 502], axis=1)[keep]
    trials = {
        "start_time": _sec(starts),
        "stop_time": _sec(stops),
        "ready_time": _sec(ready),
        "set_time": _sec(set_ms),
        "go_time": _sec(go),
        "is_eye": is_eye,
        "theta": theta,
        "is_short": is_short,
        "ts": ts.astype(np.float64),
        "tp": tp.astype(np.float64),
        "is_outlier": outlier,
        "split": split,
    }
    heldin, heldout = unit_counts(spec, scale)
    return Layout(
        trials=trials,
        train_columns=tuple(trials),
        test_columns=("start_time", "stop_time", "set_time", "go_time", "split"),
        column_descriptions=_RSG_DESCRIPTIONS,
        epoch_start_ms=ep_start,
        epoch_len_ms=ep_stop - ep_start,
        epoch_init=_condition_inits(cond, 8 * len(short_set), rng),
        session_ms=int(stops[-1] + 800),
        required_ms=required,
        test_window_ms=np.stack([go - 1500, go], axis=1)[split == "test"],
        free_gap_ms=np.empty((0, 2)),
        n_heldin=heldin,
        n_heldout=heldout,
    )


def make_layout(spec: DatasetSpec, scale: str, rng: np.random.Generator) -> Layout:
    build = {"random_target": rtt_layout, "center_out_bump": area2_layout, "ready_set_go": rsg_layout}
    return build.get(spec.task, maze_layout)(spec, scale, rng)


_MAZE_DESCRIPTIONS = {
    "trial_type": "Maze condition of the trial",
    "trial_version": "Version of the maze: 0 one target, 1-2 three targets",
    "maze_id": "Identifier of the maze",
    "success": "Whether the trial was rewarded",
    "target_on_time": "Time of target presentation",
    "go_cue_time": "Time of the go cue",
    "move_onset_time": "Time of movement onset, calculated offline",
    "rt": "Reaction time, ms",
    "delay": "Delay between target presentation and go cue, ms",
    "num_targets": "Number of targets shown",
    "active_target": "Index of the target to reach",
}
_AREA2_DESCRIPTIONS = {
    "result": "Outcome of the trial: R reward, F failure",
    "ctr_hold_bump": "Whether a bump was applied during centre hold",
    "bump_dir": "Direction of the bump, degrees",
    "cond_dir": "Direction of the reach or bump, degrees",
    "target_on_time": "Time of target presentation",
    "go_cue_time": "Time of the go cue",
    "bump_time": "Time of the bump",
    "move_onset_time": "Time of movement onset",
}
_RSG_DESCRIPTIONS = {
    "ready_time": "Time of the ready flash",
    "set_time": "Time of the set flash",
    "go_time": "Time of the response",
    "is_eye": "Whether the response was a saccade (1) or a joystick movement (0)",
    "theta": "Target direction, degrees",
    "is_short": "Whether the sample interval came from the short prior",
    "ts": "Sample interval, ms",
    "tp": "Produced interval, ms",
    "is_outlier": "Whether tp is an outlier",
}
