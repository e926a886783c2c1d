"""Fast streaming decompression of archive files (ISA-L's inflate, about 3x zlib's speed).

The bytes are exactly zlib's (deflate is a format, not an implementation); only the speed
differs. ``open_gzip`` reads every member of a ``.gz`` file (files appended to form several
gzip members read as one stream, as ``gzip.open`` does). ``open_zip_member`` streams one
deflated zip member and checks its CRC-32 and size at the end, raising ``zipfile.BadZipFile``
as ``zipfile`` does; stored or encrypted members, or anything unusual, go through ``zipfile``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Final

from isal import igzip, isal_zlib

#: Compressed bytes read per step.
_BLOCK: Final = 1 << 20
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC: Final = b"PK\003\004"


def open_gzip(path: Path) -> IO[bytes]:
    """A buffered binary stream of a gzip file's decompressed bytes (all members)."""
    stream: IO[bytes] = igzip.open(path, "rb")  # type: ignore[no-untyped-call]
    return stream


class _MemberInflater(io.RawIOBase):
    """The decompressed bytes of one deflated zip member, verified at the end."""

    def __init__(self, fp: IO[bytes], info: zipfile.ZipInfo, data_offset: int) -> None:
        self._fp = fp
        self._info = info
        self._pos = data_offset
        self._left = info.compress_size
        self._d = isal_zlib.decompressobj(-15)
        self._crc = 0
        self._out = 0
        self._eof = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        try:
            return self._readinto(b)
        except isal_zlib.error as exc:  # type: ignore[misc]  # as zipfile reports a corrupt deflate stream
            raise zlib.error(f"{self._info.filename}: {exc}") from exc

    def _readinto(self, b: memoryview) -> int:
        while not self._pending and not self._eof:
            if self._d.unconsumed_tail:
                data = self._d.decompress(self._d.unconsumed_tail, max(len(b), _BLOCK))
            elif not self._d.eof and self._left > 0:
                self._fp.seek(self._pos)
                raw = self._fp.read(min(_BLOCK, self._left))
                if not raw:
                    raise EOFError(f"{self._info.filename}: zip member truncated")
                self._pos += len(raw)
                self._left -= len(raw)
                data = self._d.decompress(raw, max(len(b), _BLOCK))
            else:
                data = b"" if self._d.eof else self._d.flush()
                self._eof = True
            if data:
                self._crc = isal_zlib.crc32(data, self._crc)
                self._out += len(data)
                self._pending = memoryview(data)
            if self._eof:
                self._finish()
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _finish(self) -> None:
        if self._out != self._info.file_size or self._crc != self._info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self._info.filename!r}")

    def close(self) -> None:
        if not self.closed:
            self._fp.close()
        super().close()


def open_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    """A buffered binary stream of one member of ``zf`` (see the module docstring)."""
    if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1 or zf.filename is None:
        return zf.open(info)
    fp = Path(zf.filename).open("rb")  # noqa: SIM115 - owned by the returned stream
    try:
        fp.seek(info.header_offset)
        head = fp.read(_LOCAL_HEADER.size)
        if len(head) != _LOCAL_HEADER.size:
            raise zipfile.BadZipFile("Truncated file header")
        fields = _LOCAL_HEADER.unpack(head)
        if fields[0] != _LOCAL_MAGIC:
            raise zipfile.BadZipFile("Bad magic number for file header")
        offset = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
    except BaseException:
        fp.close()
        raise
    return io.BufferedReader(_MemberInflater(fp, info, offset), buffer_size=_BLOCK)
