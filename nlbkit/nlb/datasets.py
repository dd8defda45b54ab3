"""The registry of the seven NLB'21 datasets: one frozen `DatasetSpec` each.

The numbers here are those of nlb_tools 0.0.4 (`make_tensors.PARAMS`) and of the DANDI archive.
Counts of units and trials are not part of a spec: they are read from the files.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from nlbkit.errors import NlbkitError

BIN_SIZES_MS: tuple[int, ...] = (5, 20)
FORWARD_MS = 200


class BehaviorSource(StrEnum):
    """Where a dataset's decoded behaviour comes from."""

    CONTINUOUS = "data"  # a 1 kHz time series in `processing/behavior`
    TRIAL_INFO = "trial_info"  # one row of trial-table columns per trial


@dataclass(frozen=True)
class Window:
    """How a trial is cut out of the session.

    Either a fixed range around an event (`align_field` + `align_range`, ms), or a variable
    window from one event to another (`start_field` .. `end_field`), aligned to `align_field`.
    """

    align_field: str
    align_range: tuple[int, int] | None = None
    start_field: str | None = None
    end_field: str | None = None
    allow_overlap: bool = False

    @property
    def is_fixed(self) -> bool:
        return self.align_range is not None

    @property
    def length_ms(self) -> int | None:
        if self.align_range is None:
            return None
        return self.align_range[1] - self.align_range[0]


@dataclass(frozen=True)
class PsthSpec:
    """Condition-averaged, smoothed rates used by the psth R2 metric."""

    cond_fields: tuple[str, ...]
    window: Window
    kern_sd_ms: int
    pad: str = "back"  # 'front' pads short (variable) trials with NaN at the start
    seg_len_ms: int | None = None
    skip_field: str | None = None  # trials where this field == 1 leave the PSTH


@dataclass(frozen=True)
class Jitter:
    """dmfc_rsg's random shift of train/val input windows.

    Shift = U[0, clip(max_ms - trial[field], 0, clip_ms)] ms with `np.random.seed(0)`; test trials
    get none.
    """

    field: str = "tp"
    max_ms: float = 1500.0
    clip_ms: float = 300.0


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    dandiset_id: str
    dandiset_version: str | None  # a published version known to hold the NLB files; None: latest
    asset_dir: str  # folder of the assets in the dandiset
    train_asset_glob: str  # matched against asset paths in the dandiset
    test_asset_glob: str
    train_asset_name: str  # the basename the archive uses today; the glob is authoritative
    test_asset_name: str
    train_window: Window
    eval_window: Window
    behavior_source: BehaviorSource
    behavior_fields: tuple[str, ...]
    lag_ms: int | None = None
    eval_seg_len_ms: int | None = None  # variable eval windows are padded to this length
    eval_pad: str = "back"
    fp_len_ms: int = FORWARD_MS
    decode_mask_field: str | None = None  # one decoder per value (0, 1) of this trial column
    behavior_mask_field: str | None = None  # behaviour is NaN where this trial column != 0
    jitter: Jitter | None = None
    psth: PsthSpec | None = None
    scale_prefix: str = ""  # '[500]', '[250]', '[100]' for the scaled mc_maze sets
    task: str = "maze"  # maze | random_target | center_out_bump | ready_set_go (what `synth` imitates)
    heldout_interleaved: bool = False  # held-out units among the held-in ones in the units table
    # For generated data at full scale; real counts are read from the files.
    typical_heldin: int = 0
    typical_heldout: int = 0
    typical_trials: tuple[int, int, int] = (0, 0, 0)  # train, val, test

    @property
    def has_trials(self) -> bool:
        """False for mc_rtt, whose 'trials' are 600 ms segments of continuous reaching."""
        return self.name != "mc_rtt"

    @property
    def subject(self) -> str:
        """The animal, as the archive names its folder: 'sub-Jenkins' -> 'Jenkins'."""
        return self.asset_dir.removeprefix("sub-")

    @property
    def decodes_velocity(self) -> bool:
        """True where behaviour is a velocity time series scored by ridge vel R2; False for
        dmfc_rsg, whose behaviour is trial information scored by tp corr."""
        return self.behavior_source is BehaviorSource.CONTINUOUS

    @property
    def eval_front_padded(self) -> bool:
        """True where eval windows vary in length and are padded with NaN before their start
        (dmfc_rsg's set..go windows)."""
        return self.eval_pad == "front"

    def group_name(self, bin_ms: int) -> str:
        """Submission group: 'mc_maze' at 5 ms, 'mc_maze_20' at 20 ms."""
        check_bin(bin_ms)
        return self.name if bin_ms == 5 else f"{self.name}_{bin_ms}"

    def forward_bins(self, bin_ms: int) -> int:
        return self.fp_len_ms // bin_ms

    @property
    def trial_ms(self) -> int:
        """Length of a trial's window (ms): the fixed train window; eval windows of varying
        length are padded to the same (`eval_seg_len_ms`)."""
        return self.train_window.length_ms

    def trial_bins(self, bin_ms: int) -> int:
        """Bins of a trial's window at `bin_ms` (140 for mc_maze at 5 ms, 35 at 20 ms)."""
        return self.trial_ms // bin_ms

    def check_bins(self, source: object, bin_ms: int, n_bins: int, n_forward: int | None = None) -> None:
        """Refuse (one line naming `source`) arrays whose bins do not fill this dataset's trial
        window (and forward window, when `n_forward` is given) at `bin_ms`: a tensor file of
        another bin width."""

        def shape(b: int) -> tuple[int, ...]:
            return (self.trial_bins(b),) if n_forward is None else (self.trial_bins(b), self.forward_bins(b))

        got = (n_bins,) if n_forward is None else (n_bins, n_forward)
        if got == shape(bin_ms):
            return
        other = [b for b in BIN_SIZES_MS if shape(b) == got]
        hint = f" (bins of {other[0]} ms?)" if other else ""
        ms = (self.trial_ms, self.fp_len_ms)[: len(got)]
        raise NlbkitError(
            f"{source}: {' + '.join(map(str, got))} {'bins + forward' if n_forward is not None else 'bins'}, "
            f"but {self.name} at {bin_ms} ms has {' + '.join(map(str, shape(bin_ms)))} "
            f"({' + '.join(map(str, ms))} ms){hint}"
        )


def _maze_window() -> Window:
    return Window(align_field="move_onset_time", align_range=(-250, 450))


def _maze_psth(kern_sd_ms: int) -> PsthSpec:
    return PsthSpec(cond_fields=("trial_type", "trial_version"), window=_maze_window(), kern_sd_ms=kern_sd_ms)


def _jenkins(session: str) -> tuple[str, str, str, str]:
    stem = f"sub-Jenkins_ses-{session}_desc"
    return (
        f"sub-Jenkins/{stem}-train*.nwb",
        f"sub-Jenkins/{stem}-test*.nwb",
        f"{stem}-train_behavior+ecephys.nwb",
        f"{stem}-test_ecephys.nwb",
    )


def _scaled_maze(name: str, dandiset: str, session: str, prefix: str, counts, units) -> DatasetSpec:
    train_glob, test_glob, train_name, test_name = _jenkins(session)
    return DatasetSpec(
        name=name,
        dandiset_id=dandiset,
        dandiset_version="0.220113.0407" if name == "mc_maze_large" else "0.220113.0408",
        asset_dir="sub-Jenkins",
        train_asset_glob=train_glob,
        test_asset_glob=test_glob,
        train_asset_name=train_name,
        test_asset_name=test_name,
        train_window=_maze_window(),
        eval_window=_maze_window(),
        behavior_source=BehaviorSource.CONTINUOUS,
        behavior_fields=("hand_vel",),
        lag_ms=120,
        psth=_maze_psth(50),
        scale_prefix=prefix,
        typical_heldin=units[0],
        typical_heldout=units[1],
        typical_trials=counts,
    )


_MC_MAZE_GLOBS = _jenkins("full")

MC_MAZE = DatasetSpec(
    name="mc_maze",
    dandiset_id="000128",
    dandiset_version="0.220113.0400",
    asset_dir="sub-Jenkins",
    train_asset_glob=_MC_MAZE_GLOBS[0],
    test_asset_glob=_MC_MAZE_GLOBS[1],
    train_asset_name=_MC_MAZE_GLOBS[2],
    test_asset_name=_MC_MAZE_GLOBS[3],
    train_window=_maze_window(),
    eval_window=_maze_window(),
    behavior_source=BehaviorSource.CONTINUOUS,
    behavior_fields=("hand_vel",),
    lag_ms=100,
    psth=_maze_psth(70),
    typical_heldin=137,
    typical_heldout=45,
    typical_trials=(1721, 574, 574),
)

MC_RTT = DatasetSpec(
    name="mc_rtt",
    task="random_target",
    dandiset_id="000129",
    dandiset_version=None,
    asset_dir="sub-Indy",
    train_asset_glob="sub-Indy/sub-Indy_desc-train*.nwb",
    test_asset_glob="sub-Indy/sub-Indy_desc-test*.nwb",
    train_asset_name="sub-Indy_desc-train_behavior+ecephys.nwb",
    test_asset_name="sub-Indy_desc-test_ecephys.nwb",
    train_window=Window(align_field="start_time", align_range=(0, 600), allow_overlap=True),
    eval_window=Window(align_field="start_time", align_range=(0, 600), allow_overlap=True),
    behavior_source=BehaviorSource.CONTINUOUS,
    behavior_fields=("finger_vel",),
    lag_ms=140,
    typical_heldin=98,
    typical_heldout=32,
    typical_trials=(810, 270, 272),
)

AREA2_BUMP = DatasetSpec(
    name="area2_bump",
    task="center_out_bump",
    heldout_interleaved=True,
    dandiset_id="000127",
    dandiset_version="0.220113.0359",
    asset_dir="sub-Han",
    train_asset_glob="sub-Han/sub-Han_desc-train*.nwb",
    test_asset_glob="sub-Han/sub-Han_desc-test*.nwb",
    train_asset_name="sub-Han_desc-train_behavior+ecephys.nwb",
    test_asset_name="sub-Han_desc-test_ecephys.nwb",
    train_window=Window(align_field="move_onset_time", align_range=(-100, 500)),
    eval_window=Window(align_field="move_onset_time", align_range=(-100, 500), allow_overlap=True),
    behavior_source=BehaviorSource.CONTINUOUS,
    behavior_fields=("hand_vel",),
    lag_ms=-20,
    decode_mask_field="ctr_hold_bump",
    psth=PsthSpec(
        cond_fields=("cond_dir", "ctr_hold_bump"),
        window=Window(align_field="move_onset_time", align_range=(-100, 500)),
        kern_sd_ms=40,
    ),
    typical_heldin=49,
    typical_heldout=16,
    typical_trials=(272, 92, 98),
)

DMFC_RSG = DatasetSpec(
    name="dmfc_rsg",
    task="ready_set_go",
    heldout_interleaved=True,
    dandiset_id="000130",
    dandiset_version="0.220113.0407",
    asset_dir="sub-Haydn",
    train_asset_glob="sub-Haydn/sub-Haydn_desc-train*.nwb",
    test_asset_glob="sub-Haydn/sub-Haydn_desc-test*.nwb",
    train_asset_name="sub-Haydn_desc-train_ecephys.nwb",
    test_asset_name="sub-Haydn_desc-test_ecephys.nwb",
    train_window=Window(align_field="go_time", align_range=(-1500, 0), allow_overlap=True),
    eval_window=Window(align_field="go_time", start_field="set_time", end_field="go_time"),
    behavior_source=BehaviorSource.TRIAL_INFO,
    behavior_fields=("is_eye", "theta", "is_short", "ts", "tp"),
    eval_seg_len_ms=1500,
    eval_pad="front",
    behavior_mask_field="is_outlier",
    jitter=Jitter(),
    psth=PsthSpec(
        cond_fields=("is_eye", "theta", "is_short", "ts"),
        window=Window(align_field="go_time", start_field="set_time", end_field="go_time"),
        kern_sd_ms=70,
        pad="front",
        seg_len_ms=1500,
        skip_field="is_outlier",
    ),
    typical_heldin=45,
    typical_heldout=15,
    typical_trials=(741, 248, 252),
)

MC_MAZE_LARGE = _scaled_maze("mc_maze_large", "000138", "large", "[500]", (375, 125, 100), (122, 40))
MC_MAZE_MEDIUM = _scaled_maze("mc_maze_medium", "000139", "medium", "[250]", (188, 62, 100), (114, 38))
MC_MAZE_SMALL = _scaled_maze("mc_maze_small", "000140", "small", "[100]", (75, 25, 100), (107, 35))

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (MC_MAZE, MC_RTT, AREA2_BUMP, DMFC_RSG, MC_MAZE_LARGE, MC_MAZE_MEDIUM, MC_MAZE_SMALL)
}
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The spec of an NLB dataset; an unknown name fails with the valid ones and the closest."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise NlbkitError(
            f"unknown dataset '{name}'.{hint} Valid names: {', '.join(DATASET_NAMES)}"
        ) from None


def check_bin(bin_ms: int) -> int:
    if bin_ms not in BIN_SIZES_MS:
        raise NlbkitError(f"bin size {bin_ms} ms is not an NLB bin size; use one of {BIN_SIZES_MS}")
    return bin_ms
