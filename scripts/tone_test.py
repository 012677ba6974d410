#!/usr/bin/env python3
"""Checks scripts/tone.py against tones made by sox (needs sox; python3 -m unittest, or run it).

    python3 scripts/tone_test.py
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

TONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tone.py")


def sox(*args):
    subprocess.run(["sox", *args], check=True, stderr=subprocess.DEVNULL)


def tone(path, *args):
    """(exit status, JSON result, stderr) of tone.py on path."""
    p = subprocess.run([sys.executable, TONE, path, *args], capture_output=True, text=True)
    return p.returncode, (json.loads(p.stdout) if p.stdout else None), p.stderr


@unittest.skipUnless(shutil.which("sox"), "sox is not installed")
class ToneTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tone-test-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_stereo_48k(self):
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", self.path("t.wav"), "synth", "1", "sine", "440")
        rc, r, err = tone(self.path("t.wav"), "--expect", "440", "--min-seconds", "0.99", "--max-gap-ms", "0")
        self.assertEqual(rc, 0, err)
        self.assertAlmostEqual(r["frequency_hz"], 440, delta=1)
        self.assertEqual((r["rate"], r["channels"], r["bits"]), (48000, 2, 16))
        self.assertAlmostEqual(r["duration_s"], 1.0, delta=0.011)
        self.assertAlmostEqual(r["level_dbfs"], -3.0, delta=0.1)
        self.assertEqual(r["onset_s"], 0.0)

    def test_mono_44k1_quiet(self):
        sox("-n", "-r", "44100", "-c", "1", "-b", "16", self.path("t.wav"), "synth", "2", "sine", "660", "vol", "0.1")
        rc, r, err = tone(self.path("t.wav"), "--expect", "660", "--min-seconds", "1.9", "--min-level", "-30")
        self.assertEqual(rc, 0, err)
        self.assertAlmostEqual(r["level_dbfs"], -23.0, delta=0.1)
        self.assertAlmostEqual(r["duration_s"], 2.0, delta=0.011)

    def test_wrong_frequency_fails(self):
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", self.path("t.wav"), "synth", "1", "sine", "880")
        rc, r, err = tone(self.path("t.wav"), "--expect", "440")
        self.assertEqual(rc, 1)
        self.assertIn("dominant frequency is 880", err)

    def test_silence_before_and_a_gap(self):
        p = self.path
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("s.wav"), "trim", "0", "0.5")
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("a.wav"), "synth", "0.6", "sine", "440")
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("g.wav"), "trim", "0", "0.05")
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("b.wav"), "synth", "0.4", "sine", "440")
        sox(p("s.wav"), p("a.wav"), p("g.wav"), p("b.wav"), p("t.wav"))
        rc, r, err = tone(p("t.wav"), "--expect", "440", "--min-seconds", "1", "--max-gap-ms", "20")
        self.assertEqual(rc, 1)
        self.assertIn("longest gap in the tone is", err)
        self.assertAlmostEqual(r["onset_s"], 0.5, delta=0.011)
        self.assertAlmostEqual(r["longest_gap_ms"], 50, delta=10)
        self.assertEqual(r["gaps"], 1)
        self.assertAlmostEqual(r["duration_s"], 1.05, delta=0.021)
        self.assertAlmostEqual(r["tone_s"], 1.0, delta=0.021)
        rc, r, err = tone(p("t.wav"), "--expect", "440", "--max-gap-ms", "60")
        self.assertEqual(rc, 0, err)

    def test_too_short(self):
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", self.path("t.wav"), "synth", "0.3", "sine", "440")
        rc, r, err = tone(self.path("t.wav"), "--expect", "440", "--min-seconds", "0.5")
        self.assertEqual(rc, 1)
        self.assertIn("lasts 0.3 s", err)

    def test_silence_has_no_tone(self):
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", self.path("t.wav"), "trim", "0", "1")
        rc, r, err = tone(self.path("t.wav"), "--expect", "440")
        self.assertEqual(rc, 1)
        self.assertIsNone(r["frequency_hz"])
        self.assertIn("found no sound", err)

    def test_absent(self):
        p = self.path
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("a.wav"), "synth", "1", "sine", "440", "vol", "0.5")
        sox("-n", "-r", "48000", "-c", "2", "-b", "16", p("b.wav"), "synth", "1", "sine", "880", "vol", "0.3")
        sox("-m", p("a.wav"), p("b.wav"), p("m.wav"))
        rc, r, err = tone(p("a.wav"), "--expect", "440", "--absent", "880")
        self.assertEqual(rc, 0, err)
        rc, r, err = tone(p("m.wav"), "--expect", "440", "--absent", "880")
        self.assertEqual(rc, 1)
        self.assertIn("880.0 Hz should be absent", err)

    def test_unfinished_header_and_float(self):
        # QEMU's wav audiodev writes the sizes when it closes the file: 0 until then.
        sox("-n", "-r", "44100", "-c", "2", "-b", "16", self.path("t.wav"), "synth", "1", "sine", "440")
        with open(self.path("t.wav"), "r+b") as f:
            data = f.read()
            pos = data.index(b"data")
            f.seek(pos + 4)
            f.write(struct.pack("<I", 0))
            f.seek(4)
            f.write(struct.pack("<I", 0))
        rc, r, err = tone(self.path("t.wav"), "--expect", "440", "--min-seconds", "0.99")
        self.assertEqual(rc, 0, err)
        sox("-n", "-r", "48000", "-c", "1", "-e", "floating-point", "-b", "32", self.path("f.wav"), "synth", "1", "sine", "440")
        rc, r, err = tone(self.path("f.wav"), "--expect", "440", "--min-seconds", "0.99")
        self.assertEqual(rc, 0, err)
        self.assertEqual(r["format"], "f32")

    def test_not_a_wav(self):
        with open(self.path("x.wav"), "wb") as f:
            f.write(b"hello")
        rc, r, err = tone(self.path("x.wav"))
        self.assertEqual(rc, 2)
        self.assertIn("not a RIFF/WAVE file", err)


if __name__ == "__main__":
    unittest.main()
