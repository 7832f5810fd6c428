"""The content-addressed evidence store: write once, verify on every read."""

from __future__ import annotations

import os
import stat

import pytest

from storage.evidence import EvidenceCorrupted, EvidenceMissing, EvidenceStore, sha256_of

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"


def test_put_names_the_file_by_its_hash(tmp_path):
    store = EvidenceStore(tmp_path)
    digest = store.put(JPEG)
    assert digest == sha256_of(JPEG)
    path = tmp_path / digest[:2] / digest[2:4] / f"{digest}.jpg"
    assert store.path(digest) == path and path.read_bytes() == JPEG
    assert not stat.S_IMODE(path.stat().st_mode) & 0o222  # read-only once written
    assert store.get(digest) == JPEG
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_second_put_keeps_the_first_file(tmp_path):
    store = EvidenceStore(tmp_path)
    digest = store.put(JPEG)
    before = store.path(digest).stat().st_mtime_ns
    assert store.put(JPEG) == digest
    assert store.path(digest).stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated
        lambda b: b[:100] + bytes([b[100] ^ 0x01]) + b[101:],  # one bit flipped
        lambda b: b + b"\x00",  # appended
        lambda b: b"",  # emptied
    ],
    ids=["truncated", "bit_flip", "appended", "emptied"],
)
def test_corrupted_file_is_detected_on_read(tmp_path, damage):
    store = EvidenceStore(tmp_path)
    digest = store.put(JPEG)
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(damage(JPEG))
    with pytest.raises(EvidenceCorrupted, match=digest) as exc:
        store.get(digest)
    assert exc.value.actual == sha256_of(damage(JPEG))
    # the good bytes arriving again repair the store
    store.put(JPEG)
    assert store.get(digest) == JPEG


def test_missing_file_and_bad_names(tmp_path):
    store = EvidenceStore(tmp_path)
    with pytest.raises(EvidenceMissing):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.path("../../etc/passwd")
