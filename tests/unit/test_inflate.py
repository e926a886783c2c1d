"""The ISA-L readers give exactly zipfile's and gzip's bytes, and refuse damaged members."""

from __future__ import annotations

import gzip
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.history.inflate import open_gzip, open_zip_member


@settings(max_examples=30, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    repeat=st.integers(1, 400),
    read=st.integers(1, 70_000),
)
def test_readers_give_the_same_bytes_as_zipfile_and_gzip(tmp_path_factory, parts, repeat, read):
    d = tmp_path_factory.mktemp("inflate")
    data = b"".join(p * repeat for p in parts)
    gz = d / "a.csv.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(parts[0] * repeat)
    for p in parts[1:]:  # appended members read as one stream
        with gzip.open(gz, "ab") as fh:
            fh.write(p * repeat)
    zp = d / "a.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.csv", data)
    with zipfile.ZipFile(zp) as z:
        with open_zip_member(z, z.infolist()[0]) as fh:
            chunks = iter(lambda: fh.read(read), b"")
            assert b"".join(chunks) == z.read("a.csv") == data
    with open_gzip(gz) as fh:
        assert fh.read() == gzip.decompress(gz.read_bytes()) == data


def _zip(path, data):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.csv", data)
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    return info.header_offset + 30 + len("a.csv"), info.compress_size


def test_a_damaged_zip_member_is_refused_as_zipfile_refuses_it(tmp_path):
    data = b"".join(b"%d,94000.5,0.01,%d\n" % (i, i * 7) for i in range(50_000))
    p = tmp_path / "a.zip"
    start, size = _zip(p, data)
    raw = bytearray(p.read_bytes())
    raw[start + size // 2] ^= 0xFF  # one flipped byte in the deflate stream
    p.write_bytes(bytes(raw))
    for reader in ("zipfile", "isal"):
        with zipfile.ZipFile(p) as z, pytest.raises((zipfile.BadZipFile, zlib.error)):
            info = z.infolist()[0]
            fh = z.open(info) if reader == "zipfile" else open_zip_member(z, info)
            with fh:
                while fh.read(1 << 16):
                    pass


def test_a_zip_member_whose_crc_does_not_match_is_refused(tmp_path):
    p = tmp_path / "a.zip"
    _zip(p, b"1,2,3\n" * 1000)
    raw = bytearray(p.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")  # the central directory's CRC-32 of the member
    raw[cd + 16] ^= 0x01
    p.write_bytes(bytes(raw))
    with zipfile.ZipFile(p) as z, pytest.raises(zipfile.BadZipFile, match="CRC"):
        with open_zip_member(z, z.infolist()[0]) as fh:
            fh.read()
