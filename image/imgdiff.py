#!/usr/bin/env python3
"""Pixel-exact comparison of two screenshots (PPM P6 or 8-bit PNG, RGB or RGBA; alpha ignored).

    imgdiff.py A B [--ignore X,Y,W,H]...

Prints "size WxH differing N bbox X0,Y0-X1,Y1" (bbox of the differing pixels, or "none") and
exits 0 when they are the same size, 1 otherwise. No dependencies beyond the standard library.
"""
import struct
import sys
import zlib


def read_ppm(data):
    fields = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError("only binary 8-bit PPM (P6) is supported")
    w, h = int(fields[1]), int(fields[2])
    return w, h, 3, data[pos:pos + w * h * 3]


def read_png(data):
    pos = 8
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError("only 8-bit non-interlaced RGB/RGBA PNG is supported")
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = bytearray(h * stride)
    prev = bytearray(stride)
    i = 0
    for y in range(h):
        ftype = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if ftype == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif ftype == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xFF
        elif ftype == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif ftype == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, bpp, bytes(out)


def load(path):
    data = open(path, "rb").read()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        w, h, bpp, px = read_png(data)
    else:
        w, h, bpp, px = read_ppm(data)
    if bpp == 4:
        px = b"".join(px[i:i + 3] for i in range(0, len(px), 4))
    return w, h, px


def main(argv):
    ignore = []
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--ignore":
            ignore.append(tuple(int(v) for v in argv[i + 1].split(",")))
            i += 2
        else:
            args.append(argv[i])
            i += 1
    (wa, ha, a), (wb, hb, b) = load(args[0]), load(args[1])
    if (wa, ha) != (wb, hb):
        print(f"size {wa}x{ha} vs {wb}x{hb}: different sizes")
        return 1
    diff = 0
    x0 = y0 = 1 << 30
    x1 = y1 = -1
    row = wa * 3
    for y in range(ha):
        ra, rb = a[y * row:(y + 1) * row], b[y * row:(y + 1) * row]
        if ra == rb:
            continue
        for x in range(wa):
            if ra[x * 3:x * 3 + 3] != rb[x * 3:x * 3 + 3]:
                if any(ix <= x < ix + iw and iy <= y < iy + ih for ix, iy, iw, ih in ignore):
                    continue
                diff += 1
                x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
    bbox = f"{x0},{y0}-{x1},{y1}" if diff else "none"
    print(f"size {wa}x{ha} differing {diff} bbox {bbox}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
