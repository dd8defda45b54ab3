"""The download core: the streaming dandi-etag, and downloads from an in-memory source."""

from __future__ import annotations

import random

import pytest
from dandischema.digests.dandietag import DandiETag

from nlbkit.errors import NlbkitError
from nlbkit.fetch.download import (
    DANDI_ETAG,
    Expected,
    RetryPolicy,
    StreamingETag,
    download_verified,
    partial_dir,
)

PART = 64 * 1024 * 1024  # dandi-etag's smallest part size


@pytest.mark.parametrize("size", [0, 1, 1000, PART, PART + 1])
def test_streaming_etag_equals_dandischema(size, tmp_path):
    data = random.Random(size).randbytes(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    hasher = StreamingETag(size)
    rng, i = random.Random(1), 0
    while i < size:  # blocks of random length, across part boundaries
        step = rng.randint(1, 3 << 20)
        hasher.update(data[i:i + step])
        i += step
    assert hasher.hexdigest() == DandiETag.from_file(path).as_str()


def test_streaming_etag_rejects_extra_bytes_and_reports_incomplete():
    hasher = StreamingETag(10)
    hasher.update(b"12345")
    assert hasher.hexdigest().startswith("incomplete")
    with pytest.raises(ValueError):
        hasher.update(b"123456")


def etag_of(data: bytes) -> str:
    hasher = StreamingETag(len(data))
    hasher.update(data)
    return hasher.hexdigest()


def test_a_source_that_sends_too_much_is_restarted_then_refused(tmp_path):
    data = b"abcdefghij" * 100
    calls = []

    def sends_double(offset):
        calls.append(offset)
        yield data + data

    final = tmp_path / "f.bin"
    with pytest.raises(NlbkitError, match="more than the 1000 B announced"):
        download_verified(final, Expected(len(data), DANDI_ETAG, etag_of(data)), sends_double,
                          policy=RetryPolicy(attempts=2, backoff_s=0.0), progress=False)
    assert calls == [0, 0]  # started over once, from scratch
    assert not final.exists() and not partial_dir(final).exists()


def test_a_stalling_source_gives_up_after_the_allowed_attempts(tmp_path):
    data = b"x" * 1000
    calls = []

    def sends_nothing(offset):
        calls.append(offset)
        return iter(())

    final = tmp_path / "f.bin"
    with pytest.raises(NlbkitError, match="transfer ended at 0 of 1000 B.*nothing was kept"):
        download_verified(final, Expected(len(data), DANDI_ETAG, etag_of(data)), sends_nothing,
                          policy=RetryPolicy(attempts=3, backoff_s=0.0), progress=False)
    assert len(calls) == 3 and not final.exists() and not partial_dir(final).exists()
