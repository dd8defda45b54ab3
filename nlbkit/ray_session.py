"""Ray for the commands that spread work over it (`nlbkit sweep`, `nlbkit train-all`).

One place decides how Ray is started: a quiet local instance on this machine's CPUs, or a
connection to an existing cluster (`--address host:port`, or `auto`).
"""

from __future__ import annotations

import logging
import os

from nlbkit.errors import NlbkitError


def start_ray(address: str | None, cpus: int | None) -> bool:
    """Connect to `address`, or start a quiet local instance; True if this call started Ray."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the compact CLIReporter table
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as exc:
            raise NlbkitError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        return True
    ray.init(
        num_cpus=cpus or os.cpu_count() or 1,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,  # tasks exchange only small results and checkpoints
        **quiet,
    )
    return True
