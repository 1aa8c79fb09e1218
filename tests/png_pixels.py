"""Read an 8-bit PNG into a numpy array with zlib alone (the project ships no image library).

Enough for vl-convert's and Chromium's output: 8-bit greyscale, RGB or RGBA, not interlaced, any of
the five row filters (None, Sub and Up vectorised; Average and Paeth byte by byte, slower but exact).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


def png_size(path: str | Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def read_png(path: str | Path, max_rows: int | None = None) -> np.ndarray:
    """[height, width, channels] uint8; only the top `max_rows` rows if given (rows decode in order)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    assert depth == 8 and interlace == 0 and colour in CHANNELS, "only 8-bit, non-interlaced PNGs"
    bpp = CHANNELS[colour]
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, stride + 1)
    height = min(height, max_rows or height)
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            row = line.copy()
        elif kind == 1:  # Sub: a running sum along each channel
            row = (
                (np.cumsum(line.reshape(width, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
            )
        elif kind == 2:
            row = (line.astype(np.int64) + previous) % 256
        else:
            row = _slow_row(kind, line, previous, bpp)
        out[y] = row
        previous = out[y].astype(np.int64)
    return out.reshape(height, width, bpp)


def _slow_row(kind: int, line: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    row, up = bytearray(line.tobytes()), previous.tolist()
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        if kind == 3:
            row[i] = (row[i] + (left + up[i]) // 2) % 256
        else:  # Paeth
            corner = up[i - bpp] if i >= bpp else 0
            p = left + up[i] - corner
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
            row[i] = (row[i] + predictor) % 256
    return np.frombuffer(bytes(row), dtype=np.uint8)
