"""Download Binance trade archives and their ``.CHECKSUM`` files (verified before kept)."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import httpx

from feeder.history.archive import ArchiveError, download_to, get_text, sha256_file, write_atomic
from feeder.history.binance_archive import (
    ArchiveFile,
    DataType,
    MarketType,
    Period,
    archive_relpath,
    checksum_path,
    parse_archive_name,
    parse_checksum,
    verify_checksum,
)


def download(
    base_url: str,
    market_type: MarketType,
    data_type: DataType,
    symbol: str,
    date: str,
    dest_root: Path,
    client: httpx.Client,
    period: Period = "daily",
) -> ArchiveFile:
    """Download one archive zip and its ``.CHECKSUM`` into the same layout below ``dest_root``.

    Fetches ``{base_url}/data/{spot|futures/um|futures/cm}/{period}/{data_type}/{SYMBOL}/
    {SYMBOL}-{data_type}-{date}.zip`` (``base_url`` is normally ``PUBLIC_ARCHIVE_URL``). Nothing is
    downloaded when the file is already there and matches its local CHECKSUM; a local file that
    does not match is downloaded again. The zip is streamed to a temporary file in the target
    directory, hashed on the way, and renamed into place only when the hash matches.

    Raises:
        ArchiveError: naming the URL, on 404 (or another HTTP error status) or checksum mismatch.
    """
    rel = archive_relpath(market_type, data_type, symbol, date, period)
    url = f"{base_url.rstrip('/')}/data/{rel}"
    dest = Path(dest_root) / rel
    cs_path = checksum_path(dest)
    if dest.exists() and cs_path.exists():
        with suppress(ArchiveError):
            if verify_checksum(dest):
                return _described(dest, market_type)

    expected = parse_checksum(get_text(client, url + ".CHECKSUM"), url + ".CHECKSUM")
    cs_text = f"{expected}  {dest.name}\n".encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not (dest.exists() and sha256_file(dest) == expected):
        download_to(client, url, dest, sha256=expected)
    write_atomic(cs_path, cs_text)
    return _described(dest, market_type)


def _described(path: Path, market_type: MarketType) -> ArchiveFile:
    af = parse_archive_name(path, market_type)
    if af is None:  # cannot happen for paths built by archive_relpath
        raise ArchiveError(f"{path}: not a trade archive name")
    return af
