"""Content-addressed evidence store: `<root>/ab/cd/<sha256>.jpg`.

A file is named by the sha256 of its bytes, written once (temp file, fsync, rename, so a
reader never sees half a file) and never rewritten. Every read re-hashes the bytes: a file
that no longer matches its name raises EvidenceCorrupted, so altered evidence cannot reach
a detector or an officer unnoticed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from storage.errors import StorageError


class EvidenceCorrupted(StorageError):
    """An evidence file's bytes no longer hash to its name (altered or damaged on disk)."""

    def __init__(self, sha256: str, actual: str, path: Path):
        self.sha256, self.actual, self.path = sha256, actual, path
        super().__init__(f"evidence {sha256} is corrupted: {path} now hashes to {actual}")


class EvidenceMissing(StorageError):
    """No evidence file exists for this hash."""


def evidence_folder(data_dir: Path) -> Path:
    """Where the evidence store of a data directory lies."""
    return data_dir / "evidence"


def sha256_of(data: bytes) -> str:
    """The hex sha256 that names `data` in the store."""
    return hashlib.sha256(data).hexdigest()


class EvidenceStore:
    """Write-once, hash-verified files under one root folder."""

    def __init__(self, root: str | os.PathLike[str], suffix: str = ".jpg"):
        self.root = Path(root)
        self.suffix = suffix

    def path(self, sha256: str) -> Path:
        """Where the file for `sha256` lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, but got {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{self.suffix}"

    def put(self, data: bytes) -> str:
        """Store `data` (once; a second put of the same bytes is a no-op) and return its sha256.

        An existing file under the name is re-verified, so a corrupted copy is replaced by
        the good bytes that arrive again rather than kept.
        """
        digest = sha256_of(data)
        target = self.path(digest)
        if target.exists():
            try:
                self.get(digest)
                return digest
            except EvidenceCorrupted:
                pass  # the new, correct bytes take the damaged file's place below
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=self.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def put_file(self, source: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
        """Store a file of any size (streamed, hashed while copied); return its sha256.

        For recorded footage, which does not fit in memory. A file already stored under the
        hash is kept; the copy is discarded.
        """
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=self.suffix)
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while block := src.read(chunk):
                    digest.update(block)
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
            target = self.path(digest.hexdigest())
            if target.exists() and target.stat().st_size == Path(tmp).stat().st_size:
                Path(tmp).unlink()
                return digest.hexdigest()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def get(self, sha256: str) -> bytes:
        """The bytes stored under `sha256`, verified; EvidenceCorrupted if they do not match."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise EvidenceMissing(f"no evidence file for {sha256} at {target}") from None
        actual = sha256_of(data)
        if actual != sha256:
            raise EvidenceCorrupted(sha256, actual, target)
        return data

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()
