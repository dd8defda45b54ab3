"""The test-phase targets of generated data, in the layout of nlb_tools' `eval_data_test.h5`.

A test NWB holds held-in units only, as NLB's do, so the held-out spikes of the test trials exist
only while `synth` draws the session. `write_test_targets` writes the whole session to an NWB file
for a moment (every trial, every unit, observed throughout, the train file's behaviour), cuts the
targets of both bin sizes out of it as `nlbkit prepare` cuts val targets
(`nlbkit.prepare.eval_targets.test_target`), and writes `<dataset>/eval_data_test.h5`: one group
per bin ('mc_maze_small', 'mc_maze_small_20'), stamped as generated. `nlbkit evaluate` scores a
generated test-phase run against it by default.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from nlbkit.nlb.datasets import BIN_SIZES_MS, DatasetSpec
from nlbkit.nlb.h5io import write_h5_groups
from nlbkit.nlb.marker import GENERATED_STAMP, H5_ATTR
from nlbkit.prepare.eval_targets import test_target
from nlbkit.prepare.inputs import Context
from nlbkit.prepare.nwb import read_session


def write_test_targets(path: Path, spec: DatasetSpec, write_session) -> Path:
    """Targets of the test trials at every NLB bin size, written atomically to `path`.

    `write_session(nwb_path)` writes the whole session (all trials and units) to `nwb_path`.
    """
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".session-") as tmp:
        nwb = write_session(Path(tmp) / "session.nwb")
        session = read_session(nwb)
        groups = {spec.group_name(b): test_target(Context(session, spec, b)) for b in BIN_SIZES_MS}
    return write_h5_groups(path, groups, root_attrs={H5_ATTR: GENERATED_STAMP, "dataset": spec.name})
