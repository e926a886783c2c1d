"""Archive files of every venue: the error they raise, hashing, atomic downloads."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Final

import httpx

_BLOCK: Final = 1 << 20  # 1 MiB


class ArchiveError(ValueError):
    """An archive file is missing, corrupt, or not in the expected format."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _check_status(resp: httpx.Response, url: str) -> None:
    if resp.status_code == 404:
        raise ArchiveError(f"not found (404): {url}")
    if resp.status_code != 200:
        raise ArchiveError(f"HTTP {resp.status_code} for {url}")


def get_text(client: httpx.Client, url: str) -> str:
    """The body of ``url`` as text; ``ArchiveError`` naming the URL on 404 or another status."""
    resp = client.get(url)
    _check_status(resp, url)
    return resp.text


def write_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` through a temporary file renamed into place."""
    with tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    ) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(dest)


def download_to(
    client: httpx.Client,
    url: str,
    dest: Path,
    headers: dict[str, str] | None = None,
    *,
    sha256: str | None = None,
) -> Path:
    """Stream ``url`` to a temporary file beside ``dest`` and rename it into place, only when
    the download is complete and (with ``sha256``) its hash matches.

    Raises:
        ArchiveError: 404 (missing upstream), another HTTP status, or a hash mismatch, naming
            the URL.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    )
    tmp_path = Path(tmp.name)
    try:
        h = hashlib.sha256()
        with tmp, client.stream("GET", url, headers=headers) as resp:
            _check_status(resp, url)
            for block in resp.iter_bytes(_BLOCK):
                if sha256 is not None:
                    h.update(block)
                tmp.write(block)
        if sha256 is not None and (actual := h.hexdigest()) != sha256:
            raise ArchiveError(
                f"checksum mismatch for {url}: expected sha256 {sha256} (.CHECKSUM), got {actual}"
            )
        tmp_path.replace(dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return dest


def fetch(
    client: httpx.Client, url: str, dest: Path, headers: dict[str, str] | None = None
) -> Path:
    """Download ``url`` to ``dest`` (atomically; kept when already there).

    Raises:
        ArchiveError: 404 (missing upstream) or another HTTP status, naming the URL.
    """
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    return download_to(client, url, dest, headers)
