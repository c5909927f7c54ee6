#!/usr/bin/env python3
"""Reference per-window speech probabilities from the Python `silero-vad` package.

Parley runs Silero VAD itself (Rust, `ort`, batched across calls). This script produces what
the model's own authors' package says for the same audio, so a Rust test can check Parley
against it window by window (parley-media `vad::reference_tests`, tolerance 0.01).

    python3 scripts/vad_reference.py                      # the 16 kHz fixture (DEFAULT_*)
    python3 scripts/vad_reference.py --rate 8000          # the 8 kHz fixture
    python3 scripts/vad_reference.py speech.wav out.json  # any 16 kHz mono 16-bit PCM WAV

Output: a JSON list, one entry per 32 ms window (512 samples at 16 kHz, 256 at 8 kHz), in order:
    [{"t_ms": 0, "p": 0.012345}, {"t_ms": 32, "p": ...}, ...]
`t_ms` is the start of the window from the start of the file; `p` the speech probability,
rounded to 6 decimals. A last partial window is zero-padded, as the package does.
Beside it (NAME.probs.json -> NAME.segments.json) the speech segments the package's
`get_speech_timestamps` finds with its default settings (threshold 0.5, min speech 250 ms,
min silence 100 ms, speech pad 30 ms), in ms: [{"start_ms": 0, "end_ms": 2046}, ...].

How the package is run, and why
-------------------------------
* The package's ONNX mode: `silero_vad.load_silero_vad(onnx=True)` returns its `OnnxWrapper`
  over `silero_vad/data/silero_vad.onnx` run by `onnxruntime` on the CPU with one thread: the
  same model file and runtime version Parley uses (scripts/fetch_models.sh pins both), so the
  check isolates Parley's own part: framing, the 64-sample context carried between windows, the
  recurrent state and the batching. The wrapper is called window by window exactly as the
  package's `get_speech_timestamps` and `VADIterator` call it, which carries the context and
  state inside the wrapper. `--mode jit` runs the package's default TorchScript model instead
  (an independent implementation of the same network), for comparison.
* The package imports torch unconditionally (`silero_vad.utils_vad` starts with
  `import torch`, and the ONNX wrapper itself builds torch tensors), so torch cannot be
  avoided. PyPI carries no CPU-only torch build for Linux x86_64 (those live on PyTorch's own
  index, which this project does not use), so the PyPI torch wheel is installed with its CUDA
  library wheels (about 5 GB in .cache/venv, once). Nothing uses a GPU. The fixture this
  produces is committed, so tests and CI never need this environment.
* The WAV is read with Python's `wave` module and scaled as int16 / 32768, as Parley does:
  torchaudio is not needed.
* `--rate 8000` runs the model's 8 kHz branch (what Parley uses for narrowband calls). An
  8 kHz WAV is used as it is; a 16 kHz WAV is first halved by averaging each pair of samples
  in integer arithmetic, `(x[2n] + x[2n+1]) >> 1`, an exact operation the Rust test repeats
  on the same file, so both sides see identical 8 kHz samples without committing a second
  recording.

The virtual environment: .cache/venv under the repository root, created on first use with
the pinned versions in PINS (from PyPI); the script then re-runs itself inside it. A stamp
file records the pins, so a change of pins rebuilds the environment.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".cache", "venv")
STAMP = os.path.join(VENV, ".parley-pins")
PINS = [
    "silero-vad==6.2.3",
    "onnxruntime==1.22.1",
    "torch==2.15.0",
    "numpy==2.4.6",
    "packaging==26.3",
]
DEFAULT_WAV = os.path.join(ROOT, ".cache", "speech", "silero_test_16k.wav")
DEFAULT_OUT = {
    16000: os.path.join(ROOT, "fixtures", "vad", "silero_test_16k.probs.json"),
    8000: os.path.join(ROOT, "fixtures", "vad", "silero_test_8k.probs.json"),
}
# The model file Parley uses (scripts/fetch_models.sh); the package's copy must be identical.
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"

# New samples per model window at each rate the model supports (32 ms either way).
WINDOW = {16000: 512, 8000: 256}


def venv_python():
    return os.path.join(VENV, "bin", "python")


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def ensure_venv():
    """Create .cache/venv with the pinned packages unless it already has exactly these pins."""
    want = "\n".join(PINS) + "\n"
    try:
        with open(STAMP) as f:
            if f.read() == want and os.path.exists(venv_python()):
                return
    except FileNotFoundError:
        pass
    print(f"vad_reference: creating {VENV} with {' '.join(PINS)}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    subprocess.run(
        [venv_python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
        check=True,
    )
    with open(STAMP, "w") as f:
        f.write(want)


def read_wav_mono(path, rate):
    """The WAV's samples at `rate`, scaled to +-1: 16 kHz or 8 kHz mono 16-bit PCM, or
    16 kHz halved to 8 kHz by pair averaging when `rate` is 8000."""
    with wave.open(path, "rb") as w:
        have = w.getframerate()
        if have not in (rate, 2 * rate) or have not in WINDOW or (w.getnchannels(), w.getsampwidth()) != (1, 2):
            sys.exit(
                f"vad_reference: {path}: need {rate // 1000} kHz (or 16 kHz) mono 16-bit PCM, got "
                f"{have} Hz, {w.getnchannels()} channel(s), "
                f"{8 * w.getsampwidth()}-bit (convert it first, e.g. "
                f"sox in.wav -r {rate} -c 1 -b 16 out.wav)"
            )
        frames = w.readframes(w.getnframes())
    import numpy as np

    pcm = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    if have != rate:
        pcm = (pcm[0 : len(pcm) // 2 * 2 : 2] + pcm[1 : len(pcm) // 2 * 2 : 2]) >> 1
    return pcm.astype(np.float32) / 32768.0


def package_model_sha256():
    from importlib import resources

    data = resources.files("silero_vad.data").joinpath("silero_vad.onnx").read_bytes()
    return hashlib.sha256(data).hexdigest()


def probabilities(audio, rate, mode):
    import torch
    from silero_vad import load_silero_vad

    torch.set_num_threads(1)
    model = load_silero_vad(onnx=(mode == "onnx"))
    model.reset_states()
    out = []
    with torch.no_grad():
        window = WINDOW[rate]
        for start in range(0, len(audio), window):
            chunk = torch.zeros(window, dtype=torch.float32)
            piece = torch.from_numpy(audio[start : start + window].copy())
            chunk[: len(piece)] = piece
            p = model(chunk, rate).item()
            out.append({"t_ms": start * 1000 // rate, "p": round(float(p), 6)})
    return out


def segments(audio, rate, mode):
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad(onnx=(mode == "onnx"))
    with torch.no_grad():
        ts = get_speech_timestamps(torch.from_numpy(audio.copy()), model, sampling_rate=rate)
    return [
        {"start_ms": t["start"] * 1000 // rate, "end_ms": t["end"] * 1000 // rate}
        for t in ts
    ]


def write_json_list(path, items):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(e, separators=(", ", ": ")) for e in items))
        f.write("\n]\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wav", nargs="?", default=DEFAULT_WAV, help="16 kHz (or 8 kHz) mono 16-bit WAV")
    ap.add_argument("out", nargs="?", help="JSON file to write (default: the fixture for --rate)")
    ap.add_argument("--mode", choices=["onnx", "jit"], default="onnx")
    ap.add_argument("--rate", type=int, choices=sorted(WINDOW), default=16000)
    args = ap.parse_args()
    args.out = args.out or DEFAULT_OUT[args.rate]

    if not in_venv():
        ensure_venv()
        os.execv(venv_python(), [venv_python(), os.path.abspath(__file__), *sys.argv[1:]])

    if not os.path.exists(args.wav):
        sys.exit(f"vad_reference: {args.wav} is missing (scripts/fetch_models.sh fetches the default)")
    if args.mode == "onnx":
        got = package_model_sha256()
        if got != MODEL_SHA256:
            sys.exit(f"vad_reference: the package's silero_vad.onnx has sha256 {got}, expected {MODEL_SHA256}")

    audio = read_wav_mono(args.wav, args.rate)
    probs = probabilities(audio, args.rate, args.mode)
    write_json_list(args.out, probs)
    speech = sum(1 for e in probs if e["p"] >= 0.5)
    print(
        f"vad_reference: {args.out}: {len(probs)} windows ({args.mode}), "
        f"{speech} at p >= 0.5, from {args.wav} at {args.rate} Hz",
        file=sys.stderr,
    )
    base = args.out[: -len(".probs.json")] if args.out.endswith(".probs.json") else args.out
    seg_out = base + ".segments.json"
    segs = segments(audio, args.rate, args.mode)
    write_json_list(seg_out, segs)
    print(f"vad_reference: {seg_out}: {len(segs)} speech segments", file=sys.stderr)


if __name__ == "__main__":
    main()
