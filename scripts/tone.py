#!/usr/bin/env python3
"""Finds the tone in a WAV recording and checks it (python3 standard library only).

    scripts/tone.py FILE.wav [--freq HZ] [--expect HZ] [--min-seconds S] [--max-seconds S] [--max-gap-ms M]
                             [--min-level DBFS] [--absent HZ]... [--window-ms MS]

Prints one JSON object and, with checks given, exits 1 with a message on stderr naming the
failed check (0 when all hold; 2 on an unreadable file or bad arguments). Reads 8/16/24/32-bit
integer and 32/64-bit float PCM, plain or WAVE_FORMAT_EXTENSIBLE, any rate and channel count
(channels are averaged). A data chunk whose size is 0 or runs past the end of the file (QEMU's
wav audiodev fills the sizes in only when it closes the file; pw-record's when it stops) is read
to the end of the file.

How: the recording is cut into windows of --window-ms (default 10 ms). The dominant frequency
comes from the averaged Hann-windowed spectrum (radix-2 FFT) of the loud stretches, with a
parabolic fit on the peak. A window holds the tone when the power a Goertzel filter finds at that
frequency is at least --min-fraction (default 0.5) of the window's whole power and the window is
louder than --floor-dbfs (default -60). Fields:

    frequency_hz     dominant frequency (null: nothing louder than the floor)
    onset_s, end_s   start of the first and end of the last window with the tone
    duration_s       end_s - onset_s
    tone_s           time in windows with the tone (duration_s minus the gaps)
    longest_gap_ms   the longest run of windows without the tone between onset and end
    gaps             how many such runs there are
    level_dbfs       RMS of the windows with the tone (0 dBFS: a full-scale square wave, so a
                     full-scale sine is -3.0)
    peak_dbfs        the largest sample
    rate, channels, bits, format, seconds (the whole file)
    absent           with --absent HZ: per frequency, the largest share of a window's power
                     found at it (over windows louder than the floor)
"""

import argparse
import array
import cmath
import json
import math
import struct
import sys

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class WavError(Exception):
    pass


def read_wav(path):
    """Returns (rate, channels, bits, format name, mono samples as floats in [-1, 1])."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WavError(f"cannot read {path}: {e.strerror}") from e
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(f"{path} is not a RIFF/WAVE file")
    pos = 12
    fmt = None
    pcm = None
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16:
                raise WavError(f"{path}: fmt chunk of {size} bytes")
            tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == WAVE_FORMAT_EXTENSIBLE and size >= 40:
                # The sub-format GUID starts with the format tag.
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, channels, rate, align, bits)
        elif cid == b"data":
            # A writer that did not finish (QEMU killed, say) leaves 0 or a wrong size.
            end = body + size
            if size == 0 or end > len(data):
                end = len(data)
            pcm = data[body:end]
            break
        pos = body + size + (size & 1)
    if fmt is None:
        raise WavError(f"{path}: no fmt chunk")
    if pcm is None:
        raise WavError(f"{path}: no data chunk")
    tag, channels, rate, align, bits = fmt
    if channels < 1 or rate < 1:
        raise WavError(f"{path}: {channels} channels at {rate} Hz")
    width = bits // 8
    if tag == WAVE_FORMAT_PCM and bits in (8, 16, 24, 32):
        name = f"s{bits}" if bits > 8 else "u8"
    elif tag == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        name = f"f{bits}"
    else:
        raise WavError(f"{path}: unsupported sample format (tag {tag:#x}, {bits} bits)")
    frame = width * channels
    if align and align != frame:
        frame = align
    n = len(pcm) // frame
    pcm = pcm[: n * frame]
    if name == "s16":
        raw = array.array("h")
        raw.frombytes(pcm)
        if sys.byteorder != "little":
            raw.byteswap()
        scale = 32768.0
    elif name == "s32":
        raw = array.array("i")
        raw.frombytes(pcm)
        if sys.byteorder != "little":
            raw.byteswap()
        scale = 2147483648.0
    elif name == "f32":
        raw = array.array("f")
        raw.frombytes(pcm)
        if sys.byteorder != "little":
            raw.byteswap()
        scale = 1.0
    elif name == "f64":
        raw = array.array("d")
        raw.frombytes(pcm)
        if sys.byteorder != "little":
            raw.byteswap()
        scale = 1.0
    elif name == "u8":
        raw = [b - 128 for b in pcm]
        scale = 128.0
    else:  # s24
        raw = [
            int.from_bytes(pcm[i : i + 3], "little", signed=True) for i in range(0, len(pcm), 3)
        ]
        scale = 8388608.0
    if channels == 1:
        mono = [x / scale for x in raw]
    else:
        k = 1.0 / (scale * channels)
        mono = [sum(raw[i : i + channels]) * k for i in range(0, n * channels, channels)]
    return rate, channels, bits, name, mono


def fft(x):
    """In-place iterative radix-2 FFT of a list of complex numbers (len a power of two)."""
    n = len(x)
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            x[i], x[j] = x[j], x[i]
    size = 2
    while size <= n:
        w_step = cmath.exp(-2j * math.pi / size)
        half = size // 2
        for start in range(0, n, size):
            w = 1.0
            for k in range(start, start + half):
                t = w * x[k + half]
                x[k + half] = x[k] - t
                x[k] = x[k] + t
                w *= w_step
        size *= 2
    return x


def goertzel_power(samples, start, end, freq, rate):
    """Power (mean square) of the component at freq in samples[start:end]."""
    n = end - start
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for i in range(start, end):
        s0 = samples[i] + coeff * s1 - s2
        s2 = s1
        s1 = s0
    mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2
    # A sine of amplitude A gives |X| = A n / 2, and its mean square is A^2 / 2.
    return 2.0 * max(mag2, 0.0) / (n * n)


def db(x):
    return 10.0 * math.log10(x) if x > 0 else None


def dominant_frequency(samples, rate, loud_runs):
    """Frequency of the highest peak of the averaged spectrum over the loud stretches."""
    longest = max((e - s for s, e in loud_runs), default=0)
    if longest < 64:
        return None
    size = 1
    while size * 2 <= min(longest, 8192):
        size *= 2
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * i / size) for i in range(size)]
    spectrum = [0.0] * (size // 2)
    blocks = 0
    for s, e in loud_runs:
        pos = s
        while pos + size <= e and blocks < 24:
            x = [complex(samples[pos + i] * hann[i]) for i in range(size)]
            fft(x)
            for k in range(size // 2):
                spectrum[k] += abs(x[k]) ** 2
            blocks += 1
            pos += size
    if blocks == 0:
        return None
    # Skip DC and the lowest bins (offsets, rumble).
    lo = max(2, int(20.0 * size / rate))
    k = max(range(lo, size // 2 - 1), key=lambda i: spectrum[i])
    a, b, c = (math.log(spectrum[i] + 1e-30) for i in (k - 1, k, k + 1))
    denom = a - 2 * b + c
    delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return (k + delta) * rate / size


def analyse(path, window_ms=10.0, floor_dbfs=-60.0, min_fraction=0.5, absent=(), follow=None):
    rate, channels, bits, name, samples = read_wav(path)
    win = max(8, int(round(rate * window_ms / 1000.0)))
    nwin = len(samples) // win
    floor = 10 ** (floor_dbfs / 10.0)
    power = []
    for w in range(nwin):
        seg = samples[w * win : (w + 1) * win]
        power.append(sum(v * v for v in seg) / win)
    loud = [p >= floor for p in power]
    runs = []
    w = 0
    while w < nwin:
        if loud[w]:
            s = w
            while w < nwin and loud[w]:
                w += 1
            runs.append((s * win, w * win))
        else:
            w += 1
    result = {
        "file": path,
        "rate": rate,
        "channels": channels,
        "bits": bits,
        "format": name,
        "seconds": round(len(samples) / rate, 4),
        "window_ms": window_ms,
        "frequency_hz": None,
        "onset_s": None,
        "end_s": None,
        "duration_s": 0.0,
        "tone_s": 0.0,
        "longest_gap_ms": None,
        "gaps": 0,
        "level_dbfs": None,
        "peak_dbfs": db(max((v * v for v in samples), default=0.0)),
    }
    if result["peak_dbfs"] is not None:
        result["peak_dbfs"] = round(result["peak_dbfs"], 2)
    freq = dominant_frequency(samples, rate, runs)
    if absent:
        result["absent"] = {}
        for f in absent:
            share = 0.0
            for w in range(nwin):
                if loud[w]:
                    p = goertzel_power(samples, w * win, (w + 1) * win, f, rate)
                    share = max(share, p / power[w])
            result["absent"][str(f)] = round(share, 4)
    if freq is None:
        return result
    result["frequency_hz"] = round(freq, 2)
    # --freq: the windows of this frequency, whichever dominates the whole file (a recording
    # that holds one tone and then another).
    if follow is not None:
        freq = follow
    tone = []
    for w in range(nwin):
        if not loud[w]:
            tone.append(False)
            continue
        p = goertzel_power(samples, w * win, (w + 1) * win, freq, rate)
        tone.append(p >= min_fraction * power[w])
    idx = [w for w in range(nwin) if tone[w]]
    if not idx:
        return result
    first, last = idx[0], idx[-1]
    gaps = []
    run = 0
    for w in range(first, last + 1):
        if tone[w]:
            if run:
                gaps.append(run)
            run = 0
        else:
            run += 1
    step = win / rate
    result["onset_s"] = round(first * step, 4)
    result["end_s"] = round((last + 1) * step, 4)
    result["duration_s"] = round((last + 1 - first) * step, 4)
    result["tone_s"] = round(len(idx) * step, 4)
    result["longest_gap_ms"] = round(max(gaps, default=0) * step * 1000.0, 1)
    result["gaps"] = len(gaps)
    level = sum(power[w] for w in idx) / len(idx)
    result["level_dbfs"] = round(db(level), 2) if level > 0 else None
    return result


def check(result, args):
    """Failed checks, as messages."""
    failures = []
    f = result["frequency_hz"]
    if args.expect is not None:
        if f is None:
            failures.append(f"expected a {args.expect:g} Hz tone, found no sound above {args.floor_dbfs:g} dBFS")
        elif abs(f - args.expect) > args.tolerance:
            failures.append(
                f"expected {args.expect:g} Hz (±{args.tolerance:g}), the dominant frequency is {f:g} Hz"
            )
    if args.min_seconds is not None and result["duration_s"] < args.min_seconds:
        failures.append(f"the tone lasts {result['duration_s']:g} s, expected at least {args.min_seconds:g} s")
    if args.max_seconds is not None and result["duration_s"] > args.max_seconds:
        failures.append(f"the tone lasts {result['duration_s']:g} s, expected at most {args.max_seconds:g} s")
    gap = result["longest_gap_ms"]
    if args.max_gap_ms is not None and gap is not None and gap > args.max_gap_ms:
        failures.append(
            f"the longest gap in the tone is {gap:g} ms (at {args.window_ms:g} ms resolution), expected at most {args.max_gap_ms:g} ms"
        )
    if args.min_level is not None:
        level = result["level_dbfs"]
        if level is None or level < args.min_level:
            failures.append(f"the tone's level is {level} dBFS, expected at least {args.min_level:g} dBFS")
    for hz, share in result.get("absent", {}).items():
        if share >= args.absent_share:
            failures.append(
                f"{hz} Hz should be absent, but holds {share:.0%} of a window's power (limit {args.absent_share:.0%})"
            )
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Find the tone in a WAV file (dominant frequency, onset, duration, gaps, level) and check it.",
        epilog="Prints JSON; exits 1 when a check fails, 2 when the file cannot be read.",
    )
    p.add_argument("wav")
    p.add_argument("--expect", type=float, metavar="HZ", help="the dominant frequency must be HZ")
    p.add_argument(
        "--freq", type=float, metavar="HZ",
        help="find the windows holding HZ rather than the dominant frequency (onset, duration, gaps, level are of HZ)",
    )
    p.add_argument("--tolerance", type=float, default=5.0, metavar="HZ", help="for --expect (default 5)")
    p.add_argument("--min-seconds", type=float, metavar="S", help="the tone lasts at least S seconds")
    p.add_argument("--max-seconds", type=float, metavar="S", help="the tone lasts at most S seconds")
    p.add_argument("--max-gap-ms", type=float, metavar="M", help="no gap inside the tone longer than M ms")
    p.add_argument("--min-level", type=float, metavar="DBFS", help="the tone's RMS level is at least DBFS")
    p.add_argument(
        "--absent", type=float, action="append", default=[], metavar="HZ",
        help="no window may hold --absent-share of its power at HZ (repeatable)",
    )
    p.add_argument("--absent-share", type=float, default=0.1, help="for --absent (default 0.1)")
    p.add_argument("--window-ms", type=float, default=10.0, help="analysis window (default 10 ms)")
    p.add_argument("--floor-dbfs", type=float, default=-60.0, help="quieter windows are silence (default -60)")
    p.add_argument(
        "--min-fraction", type=float, default=0.5,
        help="share of a window's power at the frequency for it to count as tone (default 0.5)",
    )
    args = p.parse_args(argv)
    try:
        result = analyse(args.wav, args.window_ms, args.floor_dbfs, args.min_fraction, args.absent, args.freq)
    except WavError as e:
        print(f"tone.py: {e}", file=sys.stderr)
        return 2
    failures = check(result, args)
    result["ok"] = not failures
    if failures:
        result["failures"] = failures
    print(json.dumps(result))
    for msg in failures:
        print(f"tone.py: {args.wav}: {msg}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
