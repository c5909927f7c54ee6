#!/usr/bin/env python3
"""Reference G.722 streams from spandsp, for a bit-exactness test of Parley's own G.722.

Parley's G.722 (media/src/codec/g722.rs) was written from the Recommendation. The ITU-T test
vectors (G.722 Appendix II) are not distributed with Debian and cannot be fetched here, so
the check is against spandsp's G.722 instead: spandsp's own test suite (g722_tests.c) runs
its codec over those ITU vectors, so matching spandsp bit for bit on the same 16-bit input
means matching the Recommendation's arithmetic, including its saturations.

    apt-get install libspandsp2          # the library only; no headers are needed
    python3 scripts/g722_reference.py    # rewrites fixtures/g722/

What it writes (raw little-endian, no headers; see fixtures/g722/README.md):
    input.s16            the 16 kHz test signal: real speech, a full-scale chirp, full-scale
                         noise and a clipped square wave, so the quantizers, the predictor's
                         limits and every saturation are exercised
    encoded.g722         spandsp's encoding of input.s16 (64 kbit/s, one octet per pair)
    decoded.s16          spandsp's decoding of encoded.g722
    random.g722          uniformly random octets: every code the decoder can receive
    random_decoded.s16   spandsp's decoding of random.g722

Both codecs start from their reset state and run over the whole file in one go; the Rust
test feeds Parley's codec 20 ms frames (320 samples / 160 octets), which must not matter.

spandsp is called through ctypes (libspandsp.so.2, 0.0.6 in Debian 12): `g722_encode_init(
NULL, 64000, 0)` allocates a 16 kHz, unpacked, 64 kbit/s state; `g722_encode(s, out, amp,
len)` returns the octets written; `g722_decode(s, amp, data, len)` the samples written.
"""

import array
import ctypes
import math
import os
import random
import sys
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "g722")
SPEECH = os.path.join(ROOT, ".cache", "speech", "silero_test_16k.wav")
RATE = 16000


def speech(seconds, start_s):
    with wave.open(SPEECH, "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{SPEECH}: expected 16 kHz mono 16-bit")
        w.setpos(int(start_s * RATE))
        pcm = array.array("h", w.readframes(int(seconds * RATE)))
    if sys.byteorder != "little":
        pcm.byteswap()
    return list(pcm)


def chirp(seconds, f0, f1, amp):
    n = int(seconds * RATE)
    out = []
    for i in range(n):
        t = i / RATE
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
        out.append(max(-32768, min(32767, round(amp * math.sin(phase)))))
    return out


def test_signal():
    rng = random.Random(722)
    sig = speech(1.5, 2.0)
    sig += chirp(0.5, 50.0, 7900.0, 32767.0)
    sig += [rng.randint(-32768, 32767) for _ in range(RATE // 2)]
    square = []
    for i in range(RATE // 10):
        square.append(32767 if (i // 20) % 2 == 0 else -32768)
    sig += square
    sig += [0] * (RATE // 10)  # the decay back to silence
    # Whole 20 ms frames, as RTP carries them.
    sig += [0] * (-len(sig) % 320)
    return sig


def main():
    try:
        lib = ctypes.CDLL("libspandsp.so.2")
    except OSError as e:
        sys.exit(f"libspandsp.so.2 not found ({e}); apt-get install libspandsp2")
    lib.g722_encode_init.restype = ctypes.c_void_p
    lib.g722_encode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.g722_encode.restype = ctypes.c_int
    lib.g722_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.g722_decode_init.restype = ctypes.c_void_p
    lib.g722_decode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.g722_decode.restype = ctypes.c_int
    lib.g722_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]

    def encode(pcm):
        s = lib.g722_encode_init(None, 64000, 0)
        amp = (ctypes.c_int16 * len(pcm))(*pcm)
        out = (ctypes.c_uint8 * (len(pcm) // 2))()
        n = lib.g722_encode(s, out, amp, len(pcm))
        assert n == len(pcm) // 2, n
        return bytes(out)

    def decode(data):
        s = lib.g722_decode_init(None, 64000, 0)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        amp = (ctypes.c_int16 * (2 * len(data)))()
        n = lib.g722_decode(s, amp, buf, len(data))
        assert n == 2 * len(data), n
        return list(amp)

    def s16(samples):
        a = array.array("h", samples)
        if sys.byteorder != "little":
            a.byteswap()
        return a.tobytes()

    sig = test_signal()
    encoded = encode(sig)
    rng = random.Random(4242)
    random_octets = bytes(rng.randrange(256) for _ in range(RATE // 2))
    os.makedirs(OUT, exist_ok=True)
    files = {
        "input.s16": s16(sig),
        "encoded.g722": encoded,
        "decoded.s16": s16(decode(encoded)),
        "random.g722": random_octets,
        "random_decoded.s16": s16(decode(random_octets)),
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"g722_reference: wrote fixtures/g722/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
