#!/usr/bin/env python3
"""Draws hello.png, the picture of the http service's built-in page: a 64x64
globe (a shaded blue disc with green land and a soft edge), RGBA, written
with zlib and nothing else. The server ships the file it makes
(include_bytes!); run this only to change the picture:

    python3 src/services/http/make_hello_png.py src/services/http/hello.png
"""

import math
import struct
import sys
import zlib

SIZE = 64


def pixel(x, y):
    """The RGBA colour of one pixel."""
    centre = (SIZE - 1) / 2
    radius = SIZE / 2 - 2
    dx, dy = (x - centre) / radius, (y - centre) / radius
    distance = math.hypot(dx, dy)
    alpha = min(max((1 - distance) * radius + 0.5, 0.0), 1.0)
    if alpha == 0:
        return (0, 0, 0, 0)
    z = math.sqrt(max(1 - dx * dx - dy * dy, 0.0))
    # Light from the upper left, plus a little ambient light.
    light = min(0.3 + 0.7 * max(-0.4 * dx - 0.5 * dy + 0.77 * z, 0.0), 1.0)
    # Longitude and latitude on the sphere, turned a little, for the land.
    lon = math.atan2(dx, z) + 0.6
    lat = math.asin(max(min(-dy, 1.0), -1.0))
    land = (
        math.sin(3 * lon) * math.cos(2 * lat)
        + 0.5 * math.sin(5 * lat + 2 * lon)
        + 0.3 * math.cos(7 * lon - 3 * lat)
        > 0.4
    )
    ice = abs(lat) > 1.25
    if ice:
        r, g, b = 235, 240, 245
    elif land:
        r, g, b = 76, 160, 72
    else:
        r, g, b = 36, 104, 214
    return (round(r * light), round(g * light), round(b * light), round(alpha * 255))


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def main(path):
    rows = bytearray()
    for y in range(SIZE):
        rows.append(0)  # filter type: none (zlib does well enough here)
        for x in range(SIZE):
            rows.extend(pixel(x, y))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(rows), 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as out:
        out.write(png)


if __name__ == "__main__":
    main(sys.argv[1])
