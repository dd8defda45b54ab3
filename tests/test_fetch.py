"""`nlbkit fetch` against a DANDI-API server of our own on 127.0.0.1 (tests/dandi_server.py).

Everything runs offline. The dandi client's retries are made short here: `fast_retries` lowers
`dandi.dandiapi.REQUEST_RETRIES` and removes tenacity's waits, and nlbkit's own transfer retries get
a `RetryPolicy` without back-off.
"""

from __future__ import annotations

import os

# Before the dandi client is imported: no online version check, and its checksum cache (read once
# at import) stays off, so that tests never write into the user's cache directory.
os.environ.setdefault("DANDI_NO_ET", "1")
os.environ["DANDI_CACHE"] = "ignore"

import errno  # noqa: E402
import hashlib  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from dandi_server import DandiServer, ServedAsset, running_server  # noqa: E402

from nlbkit.errors import NlbkitError  # noqa: E402
from nlbkit.fetch import download as download_mod  # noqa: E402
from nlbkit.fetch.archive import fetch, list_status  # noqa: E402
from nlbkit.fetch.download import RetryPolicy, partial_dir  # noqa: E402
from nlbkit.nlb.datasets import get_spec  # noqa: E402

DATASET = "mc_maze_small"
FAST = RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=10.0)
CLI_ENV = {"DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"}


@pytest.fixture
def server(monkeypatch):
    yield from running_server(monkeypatch)


@pytest.fixture
def fast_retries(monkeypatch):
    """The dandi client retries failed API calls 12 times with growing sleeps; 2 without sleeps here."""
    import dandi.dandiapi
    import tenacity

    monkeypatch.setattr(dandi.dandiapi, "REQUEST_RETRIES", 2)
    monkeypatch.setattr(tenacity, "wait_exponential", lambda **_: tenacity.wait_none())


def serve_dataset(server: DandiServer, dataset: str = DATASET, version: str | None = None,
                  sizes: tuple[int, int] = (300_000, 120_000), seed: int = 0) -> dict[str, ServedAsset]:
    """Serve random bytes as the dataset's train and test assets; returns them by role."""
    spec = get_spec(dataset)
    rng = __import__("random").Random(seed)
    served = {}
    for role, size in zip(("train", "test"), sizes, strict=True):
        name = getattr(spec, f"{role}_asset_name")
        content = rng.randbytes(size)
        served[role] = server.add_asset(spec.dandiset_id, version or spec.dandiset_version,
                                        f"{spec.asset_dir}/{name}", content)
    return served


def local(tmp_path: Path, asset: ServedAsset, dataset: str = DATASET) -> Path:
    return tmp_path / dataset / asset.path.rsplit("/", 1)[-1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[Path]:
    """Partial downloads or temporary files anywhere under `root`."""
    return [p for p in root.rglob("*") if p.name.endswith((".dandidownload", ".part"))]


def run_fetch(server, data_dir, datasets=(DATASET,), **kw):
    return fetch(datasets, data_dir, instance=server.api_url, progress=False,
                 policy=kw.pop("policy", FAST), **kw)


def test_fresh_fetch_then_rerun_skips_without_downloading(server, tmp_path):
    served = serve_dataset(server)
    outcomes = run_fetch(server, tmp_path)
    assert [o.action for o in outcomes] == ["downloaded", "downloaded"]
    for asset in served.values():
        assert sha256(local(tmp_path, asset)) == asset.sha256
    assert leftovers(tmp_path) == []
    # The assets were found by listing the dandiset version by the registry's glob.
    listing = server.requests_to(r"/versions/0\.220113\.0408/assets/$")
    assert {r.query["glob"][0] for r in listing} == {
        get_spec(DATASET).train_asset_glob, get_spec(DATASET).test_asset_glob
    }

    before = len(server.requests_to(r"/download/|/blobs/"))
    lines = []
    again = run_fetch(server, tmp_path, echo=lines.append)
    assert [o.action for o in again] == ["skipped", "skipped"]
    assert len(server.requests_to(r"/download/|/blobs/")) == before
    assert all("present and verified" in line for line in lines)


def test_cut_connection_resumes_with_range_request(server, tmp_path):
    served = serve_dataset(server)
    train = served["train"]
    server.drop_after[train.asset_id] = [100_000]
    run_fetch(server, tmp_path)
    blob_gets = server.requests_to(f"/blobs/{train.asset_id}")
    assert len(blob_gets) == 2
    assert "Range" not in blob_gets[0].headers
    resumed_at = int(blob_gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 100_000
    assert sha256(local(tmp_path, train)) == train.sha256
    assert leftovers(tmp_path) == []


def test_interrupted_run_leaves_no_final_file_and_next_run_resumes(server, tmp_path):
    served = serve_dataset(server)
    train = served["train"]
    server.drop_after[train.asset_id] = [150_000]
    with pytest.raises(NlbkitError, match="run again to resume"):
        run_fetch(server, tmp_path, policy=RetryPolicy(attempts=1, backoff_s=0.0, timeout_s=10.0))
    final = local(tmp_path, train)
    assert not final.exists()
    kept = (partial_dir(final) / "file").stat().st_size
    assert 0 < kept <= 150_000

    rows = list_status([DATASET], tmp_path, instance=server.api_url, policy=FAST)
    assert rows[0].local.partial_bytes == kept

    outcomes = run_fetch(server, tmp_path)
    assert outcomes[0].transfer.resumed_from == kept
    assert server.requests_to(f"/blobs/{train.asset_id}")[-1].headers["Range"] == f"bytes={kept}-"
    assert sha256(final) == train.sha256
    assert leftovers(tmp_path) == []


def test_wrong_partial_download_is_discarded_and_fetched_again(server, tmp_path):
    served = serve_dataset(server)
    train = served["train"]
    server.drop_after[train.asset_id] = [50_000]
    with pytest.raises(NlbkitError):
        run_fetch(server, tmp_path, policy=RetryPolicy(attempts=1, backoff_s=0.0, timeout_s=10.0))
    part = partial_dir(local(tmp_path, train)) / "file"
    part.write_bytes(b"\0" * part.stat().st_size)  # same length, wrong bytes

    outcomes = run_fetch(server, tmp_path)
    assert outcomes[0].transfer.restarted
    assert sha256(local(tmp_path, train)) == train.sha256
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_local_file_is_reported_and_replaced(server, tmp_path, damage):
    served = serve_dataset(server)
    run_fetch(server, tmp_path)
    test_file = local(tmp_path, served["test"])
    data = bytearray(test_file.read_bytes())
    if damage == "flip":
        data[1234] ^= 0xFF
    else:
        del data[-10:]
    test_file.write_bytes(bytes(data))

    lines = []
    outcomes = run_fetch(server, tmp_path, echo=lines.append)
    assert [o.action for o in outcomes] == ["skipped", "replaced"]
    assert any("does not match the archive" in line and test_file.name in line for line in lines)
    assert sha256(test_file) == served["test"].sha256


@pytest.mark.parametrize(
    ("pattern", "status", "message"),
    [
        (r"/assets/$", 503, "HTTP 503"),  # the listing; retried by the dandi client, then given up
        (r"^/blobs/", 500, "HTTP 500"),  # the download; retried by nlbkit, then given up
        (r"^/blobs/", 404, "HTTP 404"),  # not retried
        (r"^/api/dandisets/\d+/$", 404, "No such Dandiset"),
    ],
)
def test_server_errors_give_one_clear_error_and_nothing_under_final_names(
    server, tmp_path, fast_retries, pattern, status, message
):
    served = serve_dataset(server)
    server.fail(pattern, status)
    with pytest.raises(NlbkitError, match=message) as err:
        run_fetch(server, tmp_path)
    assert "\n" not in str(err.value)
    for asset in served.values():
        assert not local(tmp_path, asset).exists()
    assert leftovers(tmp_path) == []


def test_transient_server_error_is_retried(server, tmp_path, fast_retries):
    served = serve_dataset(server)
    server.fail(r"^/blobs/", 503, times=1)
    server.fail(r"/assets/$", 502, times=1)
    run_fetch(server, tmp_path)
    assert sha256(local(tmp_path, served["train"])) == served["train"].sha256


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def test_unreachable_server_one_line_error_on_the_command_line(nlbkit_cli, tmp_path):
    proc = nlbkit_cli("fetch", DATASET, "--data-dir", tmp_path, "--dandi-instance", closed_port_url(),
                      check=False, env=CLI_ENV, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect to the DANDI instance")
    assert not any(tmp_path.iterdir())


def test_rerun_without_network_checks_files_against_the_last_fetch(server, tmp_path):
    served = serve_dataset(server)
    run_fetch(server, tmp_path)
    server.stop()  # the archive is gone: connection refused
    lines = []
    outcomes = run_fetch(server, tmp_path, echo=lines.append)
    assert [(o.action, o.detail) for o in outcomes] == [("skipped", "checked offline")] * 2
    assert "archive unreachable" in lines[-1]

    test_file = local(tmp_path, served["test"])
    test_file.write_bytes(test_file.read_bytes()[:-1] + b"?")
    with pytest.raises(NlbkitError, match=f"cannot connect.*{test_file.name} differs"):
        run_fetch(server, tmp_path)
    with pytest.raises(NlbkitError, match="cannot connect.*no earlier fetch of that version"):
        run_fetch(server, tmp_path, version="0.250101.0000")


def test_dns_failure_is_named(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(NlbkitError, match="cannot resolve host 'archive.example.org'.*DNS failure"):
        fetch([DATASET], tmp_path, instance="https://archive.example.org/api", progress=False)


def test_not_a_dandi_server(server, tmp_path):
    server.fail(r"^/server-info$|^/api/info/$", 404)
    with pytest.raises(NlbkitError, match="does not answer as a DANDI API server"):
        fetch([DATASET], tmp_path, instance=server.base_url + "/elsewhere", progress=False)


def test_instance_by_web_url_or_known_name(server, tmp_path):
    served = serve_dataset(server)
    # The web URL: the client reads the API URL from the server's /server-info.
    fetch([DATASET], tmp_path, instance=server.base_url, progress=False, policy=FAST)
    assert sha256(local(tmp_path, served["train"])) == served["train"].sha256
    with pytest.raises(NlbkitError, match="unknown DANDI instance 'no-such-archive'"):
        fetch([DATASET], tmp_path, instance="no-such-archive", progress=False)


def test_too_little_disk_space_fails_before_downloading(server, tmp_path, monkeypatch):
    serve_dataset(server)
    usage = download_mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(download_mod.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(NlbkitError, match="not enough disk space"):
        run_fetch(server, tmp_path)
    assert server.requests_to("/blobs/") == []
    assert leftovers(tmp_path) == []


def test_disk_full_while_writing(server, tmp_path, monkeypatch):
    from dandi.download import DownloadDirectory

    served = serve_dataset(server)
    real_append = DownloadDirectory.append

    def append_until_full(self, blob):
        if self.fp.tell() > 50_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, blob)

    monkeypatch.setattr(DownloadDirectory, "append", append_until_full)
    with pytest.raises(NlbkitError, match="no space left on the device"):
        run_fetch(server, tmp_path)
    assert not local(tmp_path, served["train"]).exists()


def test_version_option_picks_a_published_version(server, tmp_path):
    serve_dataset(server)
    newer = serve_dataset(server, version="0.250101.0000", seed=1)
    outcomes = run_fetch(server, tmp_path, version="0.250101.0000")
    assert {o.remote.version for o in outcomes} == {"0.250101.0000"}
    assert sha256(local(tmp_path, newer["train"])) == newer["train"].sha256
    with pytest.raises(NlbkitError, match="No such version"):
        run_fetch(server, tmp_path, version="0.199901.0000")


def test_all_fetches_every_dataset(server, tmp_path):
    from nlbkit.nlb.datasets import DATASET_NAMES

    for i, name in enumerate(DATASET_NAMES):
        spec = get_spec(name)
        version = spec.dandiset_version or "0.241017.0000"
        serve_dataset(server, name, version=version, sizes=(2_000, 1_000), seed=i)
    outcomes = run_fetch(server, tmp_path, datasets=("all",))
    assert len(outcomes) == 2 * len(DATASET_NAMES)
    for name in DATASET_NAMES:
        spec = get_spec(name)
        assert (tmp_path / name / spec.train_asset_name).stat().st_size == 2_000
        assert (tmp_path / name / spec.test_asset_name).stat().st_size == 1_000


def test_unknown_dataset_fails_before_any_request(nlbkit_cli, server, tmp_path):
    proc = nlbkit_cli("fetch", DATASET, "mc_maze_smal", "--data-dir", tmp_path,
                      "--dandi-instance", server.api_url, check=False, env=CLI_ENV)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown dataset 'mc_maze_smal'")
    assert server.requests == []


def test_command_line_fetch_list_and_help(nlbkit_cli, server, tmp_path):
    served = serve_dataset(server)
    env = {**CLI_ENV, "NLBKIT_DANDI_INSTANCE": server.api_url, "NLBKIT_DATA": str(tmp_path)}
    listing = nlbkit_cli("fetch", "--list", DATASET, env=env).stdout
    assert "missing" in listing and "300.0 KB" in listing and "0.220113.0408" in listing

    out = nlbkit_cli("fetch", DATASET, "--no-progress", env=env).stdout
    assert "done: 2 file(s) fetched (420.0 KB), 0 already present and verified" in out
    for asset in served.values():
        assert sha256(local(tmp_path, asset)) == asset.sha256

    listing = nlbkit_cli("fetch", "--list", DATASET, env=env).stdout
    assert listing.count("verified") == 2 and "0 B still to download" in listing

    helptext = nlbkit_cli("fetch", "--help").stdout
    for option in ("--list", "--targets", "--data-dir", "--dandi-instance", "--version", "--retries"):
        assert option in helptext


def test_list_without_the_archive_shows_local_files_and_their_state(nlbkit_cli, server, tmp_path):
    served = serve_dataset(server)
    run_fetch(server, tmp_path)
    local(tmp_path, served["test"]).write_bytes(b"damaged")
    other = tmp_path / "mc_rtt" / get_spec("mc_rtt").train_asset_name  # copied in, never fetched
    other.parent.mkdir()
    other.write_bytes(b"x" * 2048)
    server.stop()
    env = {**CLI_ENV, "NLBKIT_DANDI_INSTANCE": server.api_url, "NLBKIT_DATA": str(tmp_path)}
    proc = nlbkit_cli("fetch", "--list", DATASET, "mc_rtt", env=env, timeout=120)
    lines = proc.stdout.strip().splitlines()
    rows = {line.split()[2]: line for line in lines[1:-1]}
    train, test = (local(tmp_path, served[r]).name for r in ("train", "test"))
    assert "verified (last fetch)" in rows[train] and "300.0 KB" in rows[train]
    assert "differs (size 7 B, the archive says 120000 B) (last fetch)" in rows[test]
    assert "present, unverified (no record of a fetch)" in rows[other.name] and "2.0 KB" in rows[other.name]
    assert "missing" in rows[get_spec("mc_rtt").test_asset_name]
    assert lines[-1].startswith("the archive could not be reached (cannot connect")


def test_list_says_generated_for_files_synth_wrote(tmp_path):
    from nlbkit.fetch.archive import list_local
    from nlbkit.synth.generate import write_dataset

    write_dataset("mc_maze_small", tmp_path, seed=0)
    states = {row.name: row.state for row in list_local(["mc_maze_small", "mc_rtt"], tmp_path)}
    spec = get_spec("mc_maze_small")
    for name in (spec.train_asset_name, spec.test_asset_name):
        assert states[name] == "generated (nlbkit synth), not the archive's file"
    assert states[get_spec("mc_rtt").train_asset_name] == "missing"


def test_fetch_over_generated_data_leaves_a_real_folder(server, tmp_path):
    from nlbkit.nlb.marker import is_generated
    from nlbkit.synth.generate import write_dataset

    write_dataset(DATASET, tmp_path, seed=0)
    assert is_generated(tmp_path / DATASET)
    served = serve_dataset(server)
    assert [o.action for o in run_fetch(server, tmp_path)] == ["replaced", "replaced"]
    assert all(sha256(local(tmp_path, asset)) == asset.sha256 for asset in served.values())
    assert not is_generated(tmp_path / DATASET)
