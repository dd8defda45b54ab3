"""The benchmark's vocabulary: phases, tensor groups, rate keys and metric names, used by the package
and its tests alike (nlb_tools' spellings, which are part of the public file formats)."""

from __future__ import annotations

PHASES: tuple[str, ...] = ("val", "test")
# Which tensor groups hold the trials a phase trains on and scores on.
TRAIN_GROUP = {"val": "train", "test": "trainval"}
EVAL_GROUP = {"val": "val", "test": "test"}

RATE_KEYS: tuple[str, ...] = (
    "train_rates_heldin",
    "train_rates_heldout",
    "eval_rates_heldin",
    "eval_rates_heldout",
    "eval_rates_heldin_forward",
    "eval_rates_heldout_forward",
)
METRIC_NAMES: tuple[str, ...] = ("co-bps", "vel R2", "psth R2", "fp-bps", "tp corr")

Shape = tuple[int, int, int]


def rate_shapes(
    n_train: int, bins: int, n_heldin: int, n_heldout: int, n_eval: int, eval_bins: int, forward: int
) -> dict[str, Shape]:
    """The (trials, bins, neurons) shape of each of the six rate arrays."""
    return dict(
        zip(
            RATE_KEYS,
            (
                (n_train, bins, n_heldin),
                (n_train, bins, n_heldout),
                (n_eval, eval_bins, n_heldin),
                (n_eval, eval_bins, n_heldout),
                (n_eval, forward, n_heldin),
                (n_eval, forward, n_heldout),
            ),
            strict=True,
        )
    )
