#!/usr/bin/env python3
"""PESQ of Parley's receive path under packet loss and jitter (`make audio-quality`).

Speech goes through `media/examples/audio_quality.rs`: 8 kHz, PCMU in 20 ms RTP packets, a
simulated network (random loss, uniform extra delay in [0, 30] ms so packets reorder), Parley's
jitter buffer on simulated time with a 20 ms tick, and three renderings of the same playout:
zero-fill, repeat-last-frame and Parley's concealment (Concealer + ComfortNoise). Each is scored
with PESQ narrowband (ITU-T P.862, PyPI `pesq`) against the original converted to 8 kHz by the
same example. Every point is the mean over several network seeds (5 by default); one seed gives
the same jitter trace at every loss rate, and its loss patterns are nested (the packets lost at
1 % are also lost at 3 %), so the rows differ by loss alone.

    python3 scripts/audio_quality.py                 # sample speech; rewrites docs/benchmarks.md
    python3 scripts/audio_quality.py --wav FILE.wav  # any mono WAV; docs untouched

Both write target/audio-quality.json: {"0": {"zero_fill": ..., "repeat": ..., "parley": ...}, ...}
keyed by loss percent (mean PESQ NB over the seeds).

The first run creates .cache/venv-quality with the pinned packages of
scripts/audio_quality.requirements.txt (pesq builds from source: needs a C compiler) and
re-runs itself inside it.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "venv-quality"
REQUIREMENTS = ROOT / "scripts" / "audio_quality.requirements.txt"
SAMPLE_WAV = ROOT / ".cache" / "speech" / "silero_test_16k.wav"
DOCS = ROOT / "docs" / "benchmarks.md"
JSON_OUT = ROOT / "target" / "audio-quality.json"
WORK = ROOT / "target" / "audio-quality"
LOSSES = [0, 1, 3, 5, 10]
STRATEGIES = ["zero_fill", "repeat", "parley"]
START = "<!-- audio-quality:start -->"
END = "<!-- audio-quality:end -->"
REEXEC_ENV = "PARLEY_AUDIO_QUALITY_VENV"


def say(msg):
    print(f"audio-quality: {msg}", file=sys.stderr, flush=True)


def ensure_venv():
    """Create/refresh the venv when its requirements stamp differs, then run inside it."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".requirements"
    want = REQUIREMENTS.read_text()
    if not (py.exists() and stamp.exists() and stamp.read_text() == want):
        say(f"installing {REQUIREMENTS.name} into {VENV.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(want)
    if Path(sys.prefix).resolve() != VENV.resolve():
        if os.environ.get(REEXEC_ENV):
            sys.exit(f"audio-quality: {py} does not run inside {VENV}")
        os.environ[REEXEC_ENV] = "1"
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


def build():
    """Release-build the example and return its path (honours CARGO and CARGO_TARGET_DIR)."""
    cargo = os.environ.get("CARGO", "cargo")
    say("building the audio_quality example (release)")
    p = subprocess.run(
        [cargo, "build", "--release", "-p", "parley-media", "--example", "audio_quality",
         "--message-format=json-render-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    if p.returncode != 0:
        sys.exit("audio-quality: cargo build failed")
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact"
                and msg.get("target", {}).get("name") == "audio_quality"
                and msg.get("executable")):
            exe = msg["executable"]
    if not exe:
        sys.exit("audio-quality: cargo did not report the audio_quality executable")
    return exe


def read_wav16(path):
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 8000:
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)


def score(path):
    from pesq import pesq

    d = Path(path)
    ref = read_wav16(d / "ref.wav")
    return {name: float(pesq(8000, ref, read_wav16(d / f"{name}.wav"), "nb"))
            for name in [*STRATEGIES, "codec_only"]}


def run_point(job):
    """One (loss, seed): run the pipeline, score its outputs, delete them."""
    exe, wav, loss, jitter, seed = job
    out = WORK / f"loss{loss}_seed{seed}"
    p = subprocess.run(
        [exe, str(wav), str(out), "--loss", str(loss), "--jitter-ms", str(jitter),
         "--seed", str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if p.returncode != 0:
        raise RuntimeError(f"audio_quality failed (loss {loss}, seed {seed}): {p.stderr.strip()}")
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    scores = score(out)
    shutil.rmtree(out, ignore_errors=True)
    return loss, seed, stats, scores


def mean(xs):
    return sum(xs) / len(xs)


def machine():
    cores, model = 0, platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("processor"):
                cores += 1
            elif line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cores = cores or os.cpu_count() or 1
    return f"{cores} cores, {model}, {platform.system()} {platform.release()}"


def summarize(results, seeds):
    """Per loss: mean/min/max PESQ per strategy and mean jitter-buffer stats."""
    table = {}
    for loss in LOSSES:
        rows = [r for r in results if r[0] == loss]
        entry = {"pesq": {}, "range": {}}
        for s in [*STRATEGIES, "codec_only"]:
            xs = [r[3][s] for r in rows]
            entry["pesq"][s] = mean(xs)
            entry["range"][s] = (min(xs), max(xs))
        st = [r[2] for r in rows]
        frames = mean([x["packets_sent"] for x in st])
        entry["dropped_pct"] = 100 * mean([x["packets_dropped"] for x in st]) / frames
        entry["concealed_pct"] = 100 * mean([x["jb"]["concealed_frames"] for x in st]) / frames
        entry["late"] = mean([x["jb"]["late"] for x in st])
        entry["skipped"] = mean([x["jb"]["skipped_frames"] for x in st])
        entry["warp_changes"] = mean([x["warp"]["changes"] for x in st])
        entry["delay_ms"] = mean([x["mean_play_delay_ms"] for x in st])
        entry["seeds"] = len(rows)
        table[loss] = entry
    assert all(e["seeds"] == seeds for e in table.values())
    return table


def render_table(table, seeds):
    lines = [
        f"| loss | zero-fill | repeat last frame | Parley | Parley − repeat "
        f"| concealed frames | late pkts | skips | play delay |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, e in table.items():
        p = e["pesq"]
        cells = []
        for s in STRATEGIES:
            lo, hi = e["range"][s]
            cells.append(f"{p[s]:.2f} ({lo:.2f}–{hi:.2f})")
        lines.append(
            f"| {loss} % | {' | '.join(cells)} | {p['parley'] - p['repeat']:+.2f} "
            f"| {e['concealed_pct']:.1f} % | {e['late']:.1f} | {e['skipped']:.1f} "
            f"| {e['delay_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def targets(table):
    p = {loss: e["pesq"] for loss, e in table.items()}
    checks = [
        (f"PESQ NB ≥ 4.0 at 0 % loss (Parley: {p[0]['parley']:.2f})", p[0]["parley"] >= 4.0),
        # At 0 % no frame is lost, so there is nothing to beat: the strategies must agree.
        ("Parley beats repeat-last-frame at every loss rate ("
         + ", ".join(f"{l} %: {p[l]['parley'] - p[l]['repeat']:+.2f}" for l in LOSSES)
         + "; at 0 % nothing is lost and they must agree within 0.01)",
         all(p[l]["parley"] > p[l]["repeat"] for l in LOSSES if l > 0)
         and abs(p[0]["parley"] - p[0]["repeat"]) <= 0.01),
        (f"Parley ≥ 3.3 at 5 % loss with 30 ms jitter ({p[5]['parley']:.2f})",
         p[5]["parley"] >= 3.3),
    ]
    return "\n".join(f"- {'met' if ok else '**missed**'}: {text}" for text, ok in checks)


def docs_section(table, seeds, jitter, wav, command, seconds):
    codec_only = table[0]["pesq"]["codec_only"]
    return f"""{START}
## Audio quality under loss and jitter (issue 3)

**What:** real human speech ({wav}, {seconds:.0f} s, converted to 8 kHz)
encoded as PCMU in 20 ms RTP packets, sent through a simulated network (random loss at the
given rate, extra delay uniform in [0, {jitter:g}] ms so packets reorder), received by Parley's
adaptive jitter buffer on simulated time with a 20 ms tick, then rendered three ways from the
same playout: a lost frame as silence (zero-fill), as the last good frame again (repeat), or
by Parley's receiver (`Concealer`: pitch-based waveform substitution with attenuation;
`ComfortNoise` when nothing is buffered). Each is scored with PESQ narrowband (ITU-T P.862,
PyPI `pesq` 0.0.4, whole file) against the 8 kHz original; the output starts at the first
played packet's timestamp, so the buffer's playout delay is not counted as misalignment, and
200 ms of silence is appended to the speech (sent and reference alike) so that a frame of
shift at the end of the file moves silence, not speech, across the file's end.
Each cell is the mean over {seeds} network seeds (min–max in brackets); a seed gives the same
jitter trace at every loss rate and nested loss patterns. "Concealed frames" counts the
buffer's `Lost` frames (network loss, late packets, stretches), "skips" the frames dropped to
lower the delay, "play delay" the mean time from sending a packet to playing it. The output
is written in playout order, so skips and stretches shift it as a listener would hear them.
The PCMU round trip alone, with no network, scores {codec_only:.2f}.

**Command:** `{command}`

**Machine:** {machine()}.

**Run of {datetime.date.today().isoformat()}:**

{render_table(table, seeds)}

**Targets:**

{targets(table)}

**Reading:** higher is better (PESQ NB runs from 1, bad, to about 4.5, the ceiling of a
narrowband codec); compare the three strategies along a row, since they differ only in what
is played for a missing frame.
{END}"""


def write_docs(section):
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wav", type=Path, help="mono WAV to use instead of the sample speech "
                    "(docs/benchmarks.md is then left alone)")
    ap.add_argument("--seeds", type=int, default=5, help="network seeds per point (default 5)")
    ap.add_argument("--jitter-ms", type=float, default=30.0,
                    help="largest extra network delay in ms (default 30)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="points run in parallel (default: one per core)")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")

    ensure_venv()

    if args.wav is None:
        wav = SAMPLE_WAV
        if not wav.exists():
            say(f"{wav.relative_to(ROOT)} is missing: running scripts/fetch_models.sh")
            subprocess.run([str(ROOT / "scripts" / "fetch_models.sh")], cwd=ROOT, check=False)
        if not wav.exists():
            sys.exit(f"audio-quality: {wav} is missing; run scripts/setup.sh first")
    else:
        wav = args.wav.resolve()
        if not wav.exists():
            sys.exit(f"audio-quality: {args.wav}: no such file")

    exe = build()
    WORK.mkdir(parents=True, exist_ok=True)
    jobs = [(exe, wav, loss, args.jitter_ms, seed)
            for loss in LOSSES for seed in range(1, args.seeds + 1)]
    say(f"{len(jobs)} runs ({len(LOSSES)} loss rates x {args.seeds} seeds, "
        f"{args.jitter_ms:g} ms jitter) on {wav}")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_point, jobs))
    try:
        WORK.rmdir()
    except OSError:
        pass

    table = summarize(results, args.seeds)
    out = {str(loss): {s: round(e["pesq"][s], 3) for s in STRATEGIES}
           for loss, e in table.items()}
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(out, indent=2) + "\n")

    print(f"PESQ NB, mean over {args.seeds} seeds, {args.jitter_ms:g} ms jitter, {wav}")
    print(render_table(table, args.seeds))
    print(f"PCMU round trip alone: {table[0]['pesq']['codec_only']:.2f}")
    print(targets(table))
    print(f"wrote {JSON_OUT.relative_to(ROOT)}")
    if args.wav is None:
        shown = wav.relative_to(ROOT)
        command = "make audio-quality"
        if args.seeds != 5 or args.jitter_ms != 30.0:
            command = (f"python3 scripts/audio_quality.py --seeds {args.seeds} "
                       f"--jitter-ms {args.jitter_ms:g}")
        write_docs(docs_section(table, args.seeds, args.jitter_ms, f"`{shown}`", command,
                                results[0][2]["seconds"]))
        print(f"wrote the audio-quality section of {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
