"""A `nlbkit fetch` process killed (SIGKILL) or interrupted (Ctrl-C) mid-file: nothing under the
final name, and the next run resumes from the partial download with a Range request."""

from __future__ import annotations

import os

os.environ.setdefault("DANDI_NO_ET", "1")
os.environ["DANDI_CACHE"] = "ignore"  # before the dandi client is imported (see test_fetch.py)

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from dandi_server import running_server  # noqa: E402
from test_fetch import DATASET, local, run_fetch, serve_dataset, sha256  # noqa: E402

from nlbkit.fetch.download import partial_dir  # noqa: E402

MIB = 1 << 20  # the command reads 1 MiB at a time


@pytest.fixture
def server(monkeypatch):
    yield from running_server(monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_stopped_fetch_resumes_on_the_next_run(server, tmp_path, sig):
    served = serve_dataset(server, sizes=(3 * MIB, 1000))
    train = served["train"]
    server.stall_after[train.asset_id] = [2 * MIB + 100_000]  # then the server hangs
    env = {**os.environ, "DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nlbkit", "fetch", DATASET, "--data-dir", str(tmp_path),
         "--dandi-instance", server.api_url, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    part = partial_dir(local(tmp_path, train)) / "file"
    deadline = time.monotonic() + 60
    try:
        while not (part.exists() and part.stat().st_size >= 2 * MIB):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never reached 2 MiB"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert err.strip().splitlines()[-1].startswith("error: interrupted; partial downloads stay")
    assert not local(tmp_path, train).exists()
    kept = part.stat().st_size
    assert kept >= 2 * MIB

    outcomes = run_fetch(server, tmp_path)
    assert outcomes[0].transfer.resumed_from == kept
    assert server.requests_to(f"/blobs/{train.asset_id}")[-1].headers["Range"] == f"bytes={kept}-"
    assert sha256(local(tmp_path, train)) == train.sha256
    assert not part.parent.exists()
