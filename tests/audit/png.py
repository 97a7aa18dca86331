"""Just enough PNG reading (8-bit RGB/RGBA, not interlaced) to look at a screenshot's pixels, no Pillow."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def rows_with(self, rgb: tuple[int, int, int]) -> list[int]:
        """The y of every row holding at least one pixel of exactly this colour."""
        needle = bytes(rgb)
        found = []
        for y, row in enumerate(self.rows):
            start = row.find(needle)
            while start != -1:
                if start % self.channels == 0:
                    found.append(y)
                    break
                start = row.find(needle, start + 1)
        return found


def _masks(n: int) -> tuple[int, int]:
    low = int.from_bytes(b"\x00\xff" * (n // 2) + (b"\xff" if n % 2 else b""), "big")
    return low, ((1 << (8 * n)) - 1) ^ low


def _add_bytes(a: bytes, b: bytes, masks: tuple[int, int]) -> bytes:
    """Bytewise (a + b) mod 256, all at once: carries spill into masked-off neighbours."""
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    low, high = masks
    return ((((x & low) + (y & low)) & low) | (((x & high) + (y & high)) & high)).to_bytes(len(a), "big")


def read_png(data: bytes) -> Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "only 8-bit RGB(A), non-interlaced"
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    masks = _masks(stride)
    prev = bytes(stride)
    rows: list[bytes] = []
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if kind == 0:
            row = line
        elif kind == 2:
            row = _add_bytes(line, prev, masks)
        else:
            out = bytearray(line)
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                if kind == 1:
                    out[i] = (out[i] + a) & 255
                elif kind == 3:
                    out[i] = (out[i] + ((a + prev[i]) >> 1)) & 255
                else:
                    b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            row = bytes(out)
        rows.append(row)
        prev = row
    return Image(width, height, bpp, rows)
