"""Search spaces of a hyper-parameter sweep: one JSON file per dataset, read into Ray Tune's terms.

A space file (`nlbkit/sweep/spaces/<dataset>.json`, or any file given with `--space`) holds:

    {
      "fixed": {"train.val_every": 1, ...},          # set in every trial, before the sampled keys
      "space": {"train.lr": {"loguniform": [1e-3, 1e-2]},
                "model.hidden": {"choice": [32, 64]}, ...},
      "pbt_mutations": ["train.lr", ...],            # keys population-based training may perturb
      "asha": {"grace_period": 10, "reduction_factor": 3},
      "pbt": {"perturbation_interval": 10}
    }

Keys are the run configuration's dotted keys (`nlbkit train --show-config`). Distributions:
`uniform [lo, hi]`, `loguniform [lo, hi]`, `quniform [lo, hi, q]`, `randint [lo, hi)` and
`choice [values...]`. Only keys that leave the model's parameter shapes unchanged may be perturbed
by PBT, because a perturbed trial continues from another trial's checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nlbkit.config import RunConfig, resolve_key, set_value
from nlbkit.errors import NlbkitError

DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "choice")
# Keys a PBT exploit step may change: none of them alters a parameter's shape or a saved value.
PBT_SAFE = (
    "train.lr",
    "train.kl_max",
    "train.weight_decay",
    "train.grad_clip",
    "model.dropout",
    "model.cd_rate",
    "model.cd_pass_rate",
)


@dataclass
class SearchSpace:
    """A parsed space file: dotted key -> distribution spec, plus fixed values and scheduler settings."""

    source: str
    fixed: dict[str, Any] = field(default_factory=dict)
    space: dict[str, dict[str, list]] = field(default_factory=dict)
    pbt_mutations: list[str] = field(default_factory=list)
    asha: dict[str, Any] = field(default_factory=dict)
    pbt: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return list(self.space)


def default_space_path(dataset: str) -> Path:
    """The space file shipped for `dataset` (nlbkit/sweep/spaces/<dataset>.json)."""
    path = Path(str(resources.files("nlbkit") / "sweep" / "spaces" / f"{dataset}.json"))
    if not path.exists():
        raise NlbkitError(f"{path}: no default search space for '{dataset}'; give one with --space FILE")
    return path


def load_space(dataset: str, path: str | Path | None = None) -> SearchSpace:
    """Read and check a space file (the dataset's default when `path` is None)."""
    path = Path(path) if path is not None else default_space_path(dataset)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise NlbkitError(f"{path}: search-space file not found") from None
    except json.JSONDecodeError as exc:
        raise NlbkitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("space"), dict) or not raw["space"]:
        raise NlbkitError(f"{path}: a search-space file needs a non-empty 'space' mapping")
    unknown = set(raw) - {"fixed", "space", "pbt_mutations", "asha", "pbt", "description"}
    if unknown:
        raise NlbkitError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    try:
        space = SearchSpace(
            source=str(path),
            fixed={resolve_key(k): v for k, v in raw.get("fixed", {}).items()},
            space={resolve_key(k): _check_distribution(k, v) for k, v in raw["space"].items()},
            pbt_mutations=[resolve_key(k) for k in raw.get("pbt_mutations", [])],
            asha=dict(raw.get("asha", {})),
            pbt=dict(raw.get("pbt", {})),
        )
        _check_sample_values(space)
    except NlbkitError as exc:
        raise NlbkitError(f"{path}: {exc}") from None
    for key in space.pbt_mutations:
        if key not in space.space:
            raise NlbkitError(f"{path}: pbt_mutations lists '{key}', which is not in 'space'")
        if key not in PBT_SAFE:
            raise NlbkitError(
                f"{path}: PBT cannot perturb '{key}' (it changes the model's saved parameters); "
                f"perturbable keys: {', '.join(PBT_SAFE)}"
            )
    return space


def _check_distribution(key: str, spec: Any) -> dict[str, list]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise NlbkitError(f"'{key}' must map to one distribution, e.g. {{\"uniform\": [0, 1]}}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise NlbkitError(f"'{key}': unknown distribution '{kind}' (use {', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, list) or not args:
        raise NlbkitError(f"'{key}': '{kind}' needs a list of arguments")
    wanted = {"uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2}.get(kind)
    if wanted is not None and len(args) != wanted:
        raise NlbkitError(f"'{key}': '{kind}' takes {wanted} numbers, got {args}")
    if kind in ("uniform", "loguniform", "quniform", "randint") and not args[0] < args[1]:
        raise NlbkitError(f"'{key}': '{kind}' needs low < high, got {args}")
    if kind == "loguniform" and args[0] <= 0:
        raise NlbkitError(f"'{key}': 'loguniform' needs a positive lower bound, got {args}")
    return {kind: list(args)}


def _check_sample_values(space: SearchSpace) -> None:
    """Every choice and both ends of every range must be accepted by the config's field types."""
    cfg = RunConfig()
    for key, value in space.fixed.items():
        set_value(cfg, key, value)
    for key, spec in space.space.items():
        (kind, args), = spec.items()
        for value in args if kind == "choice" else args[:2]:
            set_value(cfg, key, value)


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'train.lr': x} -> {'train': {'lr': x}} (Tune's configs and PBT mutations are nested)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def tune_domain(spec: dict[str, list]):
    """The Ray Tune sampling domain of one distribution spec."""
    from ray import tune

    (kind, args), = spec.items()
    if kind == "choice":
        return tune.choice(args)
    return getattr(tune, kind)(*args)


def param_space(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """Tune's nested `param_space` of the swept keys."""
    return nest({key: tune_domain(spec) for key, spec in space.space.items()})


def pbt_mutations(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """PBT's `hyperparam_mutations`: each perturbable key resampled from its own distribution."""
    if not space.pbt_mutations:
        raise NlbkitError(f"{space.source}: 'pbt_mutations' is empty; PBT would have nothing to perturb")
    return nest({key: tune_domain(space.space[key]) for key in space.pbt_mutations})


def short_name(key: str) -> str:
    """'train.lr' -> 'lr' for table columns."""
    return key.split(".", 1)[1]
