"""`nlbkit fetch --targets`: the public test-phase targets file, served from 127.0.0.1."""

from __future__ import annotations

import os

os.environ.setdefault("DANDI_NO_ET", "1")
os.environ["DANDI_CACHE"] = "ignore"  # before the dandi client is imported (see test_fetch.py)

import hashlib  # noqa: E402
import random  # noqa: E402

import pytest  # noqa: E402
from dandi_server import running_server  # noqa: E402

from nlbkit.errors import NlbkitError  # noqa: E402
from nlbkit.fetch.download import RetryPolicy, partial_dir  # noqa: E402
from nlbkit.fetch.test_targets import (  # noqa: E402
    DEFAULT_TARGETS_SHA256,
    DEFAULT_TARGETS_SIZE,
    DEFAULT_TARGETS_URL,
    TargetsSource,
    fetch_targets,
    source_from_env,
)

FAST = RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=10.0)
CONTENT = random.Random(5).randbytes(200_000)
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def server(monkeypatch):
    yield from running_server(monkeypatch)


@pytest.fixture
def source(server) -> TargetsSource:
    return TargetsSource(server.add_file("eval_data_test.h5", CONTENT), DIGEST, len(CONTENT))


def fetched(tmp_path) -> bytes:
    return (tmp_path / "eval_data_test.h5").read_bytes()


def no_leftovers(tmp_path) -> bool:
    return not any(p.name.endswith((".dandidownload", ".part")) for p in tmp_path.rglob("*"))


def test_targets_downloaded_verified_and_skipped_on_rerun(server, source, tmp_path):
    outcome = fetch_targets(tmp_path, source, progress=False, policy=FAST)
    assert outcome.action == "downloaded" and outcome.path == tmp_path / "eval_data_test.h5"
    assert fetched(tmp_path) == CONTENT and no_leftovers(tmp_path)
    gets = len(server.requests_to("^/files/"))
    assert fetch_targets(tmp_path, source, progress=False, policy=FAST).action == "skipped"
    assert len(server.requests_to("^/files/")) == gets


def test_verified_targets_need_no_network(server, source, tmp_path):
    fetch_targets(tmp_path, source, progress=False, policy=FAST)
    server.stop()
    assert fetch_targets(tmp_path, source, progress=False, policy=FAST).action == "skipped"
    (tmp_path / "eval_data_test.h5").unlink()
    with pytest.raises(NlbkitError, match="cannot connect to the targets file's server"):
        fetch_targets(tmp_path, source, progress=False, policy=FAST)


def test_cut_connection_resumes_with_range(server, source, tmp_path):
    server.drop_after["eval_data_test.h5"] = [70_000]
    fetch_targets(tmp_path, source, progress=False, policy=FAST)
    gets = server.requests_to("^/files/")
    assert len(gets) == 2 and gets[1].headers["Range"].startswith("bytes=")
    assert fetched(tmp_path) == CONTENT and no_leftovers(tmp_path)


def test_server_ignoring_range_still_gives_the_right_file(server, source, tmp_path):
    server.drop_after["eval_data_test.h5"] = [70_000]
    server.ignore_range = True
    fetch_targets(tmp_path, source, progress=False, policy=FAST)
    assert fetched(tmp_path) == CONTENT


def test_corrupted_local_copy_replaced(server, source, tmp_path):
    fetch_targets(tmp_path, source, progress=False, policy=FAST)
    (tmp_path / "eval_data_test.h5").write_bytes(CONTENT[:-1] + b"x")
    outcome = fetch_targets(tmp_path, source, progress=False, policy=FAST)
    assert outcome.action == "replaced" and "sha256" in outcome.detail
    assert fetched(tmp_path) == CONTENT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "0" * 64}, "do not match"),
        ({"size": 123}, "not the targets file"),
        ({"url": "missing"}, "HTTP 404"),
    ],
)
def test_bad_source_fails_cleanly(server, source, tmp_path, change, message):
    if change.get("url") == "missing":
        change = {"url": source.url.replace("eval_data_test.h5", "nothing.h5")}
    bad = TargetsSource(**{**source.__dict__, **change})
    with pytest.raises(NlbkitError, match=message):
        fetch_targets(tmp_path, bad, progress=False, policy=FAST)
    assert not (tmp_path / "eval_data_test.h5").exists()
    assert not partial_dir(tmp_path / "eval_data_test.h5").exists()


def test_source_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv("NLBKIT_TARGETS_URL", raising=False)
    monkeypatch.delenv("NLBKIT_TARGETS_SHA256", raising=False)
    pinned = TargetsSource(DEFAULT_TARGETS_URL, DEFAULT_TARGETS_SHA256, DEFAULT_TARGETS_SIZE)
    assert source_from_env() == pinned
    monkeypatch.setenv("NLBKIT_TARGETS_URL", "http://127.0.0.1:9/t.h5")
    monkeypatch.setenv("NLBKIT_TARGETS_SHA256", "A" * 64)
    # Another digest: the size then comes from the server.
    assert source_from_env() == TargetsSource("http://127.0.0.1:9/t.h5", "a" * 64, None)
    with pytest.raises(NlbkitError, match="not a SHA-256"):
        source_from_env(sha256="1234")


def test_command_line_targets(nlbkit_cli, server, source, tmp_path):
    env = {"DANDI_NO_ET": "1", "DANDI_CACHE": "ignore", "NLBKIT_TARGETS_URL": source.url}
    proc = nlbkit_cli("fetch", "--targets", "--targets-sha256", DIGEST, "--data-dir", tmp_path,
                      "--no-progress", env=env)
    assert "done: 1 file(s) fetched" in proc.stdout
    assert fetched(tmp_path) == CONTENT
    # The size of a non-default file was asked with a HEAD request.
    assert [r.method for r in server.requests_to("^/files/")] == ["HEAD", "GET"]
