#!/usr/bin/env python3
"""Per-call CPU of a whole Pipecat conversation at steady state, with fake services.

The Pipecat side of Parley's "CPU per concurrent call" comparison: N calls in ONE Python process,
each a real Pipecat pipeline (pipecat-ai 1.14.0 with the `silero` extra, onnxruntime 1.32.0):

    FakeInput -> MockSTT -> user aggregator (Silero VAD) -> MockLLM -> MockTTS -> FakeOutput
              -> assistant aggregator

    python3 scripts/bench_pipecat.py --calls 10 --seconds 30 [--warmup 5] [--no-rtvi]

Run with the system python3, it makes .cache/pipecat-venv (git-ignored) when that is missing or
holds another version, pip-installs PIP_SPECS there, and re-executes itself in it.

The parts, and why
* Input: `FakeInput` is a `BaseInputTransport`, so audio goes through a transport's own queue and
  task. It feeds .cache/speech/speech_8k_s16.wav (espeak, 5.7 s) resampled once to 16 kHz by
  linear interpolation, then 3 s of silence, looped, as 20 ms `InputAudioRawFrame`s, paced in real
  time against absolute deadlines (no drift). Each call starts at another point of the loop, so
  the calls' turns don't line up.
* VAD: Pipecat's `SileroVADAnalyzer` (its shipped model) as `vad_analyzer` of the user aggregator
  (`LLMUserAggregatorParams`): where 1.x apps put it (`TransportParams` no longer has one). Its
  `VADController` broadcasts the VAD frames both ways, so the STT upstream gets them too. Default
  params (confidence 0.7, start and stop 0.2 s). Threads: `SileroOnnxModel` itself sets ORT's
  intra- and inter-op threads to 1, and each analyzer runs the model on its own one-thread
  executor: N calls make N model threads beside the event loop, and no ORT thread pools.
* Turn end: `SpeechTimeoutUserTurnStopStrategy` (0.6 s after VAD stop, once a transcript came).
  The 1.x default is the Smart Turn v3 model, a second ONNX model per turn; it is left out so the
  comparison is "Silero VAD plus fakes". The speech's one sentence pause is close to 0.6 s, so a
  loop (8.7 s) gives one turn or, now and then, two.
* STT: `MockSTT` is a `SegmentedSTTService`: the real base buffers the audio, makes a WAV of each
  VAD segment on VAD stop and calls `run_stt`, which yields a fixed `TranscriptionFrame`.
* LLM: `MockLLM` is an `LLMService`; each `LLMContextFrame` (an aggregated user turn) gets
  LLMFullResponseStart, four LLMTextFrames (two sentences), LLMFullResponseEnd: one turn.
* TTS: `MockTTS` is a `TTSService` (real sentence aggregation, TTSStarted/Stopped, TTSTextFrames);
  `run_tts` yields 0.6 s of a 440 Hz tone per sentence as 40 ms `TTSAudioRawFrame`s, at once.
* Output: `FakeOutput` is a `BaseOutputTransport` (real 40 ms chunking, bot-speaking frames). Its
  `write_audio_frame` drops the audio but is PACED at 1x real time (sleeps each chunk's length),
  so the bot speaks as long as in a real call.
* `PipelineWorker` adds Pipecat's RTVI processor and observer by default; they are kept
  (`--no-rtvi` drops them). Turn tracking stays on (default). Logging is at WARNING.

Measured: `time.process_time()` (user + sys CPU of all the process's threads, so the model runs
on the executor threads count) over `--seconds` after `--warmup`, over wall time and N:
`cpu_percent_per_call` is percent of one core per call; `cpu_cores_event_loop` is the event loop
thread's part (Pipecat's frame handling and the fakes), `cpu_cores_other_threads` the rest (mostly
Silero). `turns` counts LLM responses in the window (the run fails at 0). `feed_lag_ms_max` is how
late the worst input frame was sent: tens of ms or more means the process did not keep up (all
pipelines share one event loop, so it saturates near one core, however many there are).

Limits: the fakes are Python too, costing about what a thin client of a real service would, and
no network, serialisation or codec work is done. Only this process's CPU is counted, but other
load on the machine (a Rust build) still slows it and can nudge the numbers: run on an idle one.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "pipecat-venv"
PIPECAT_VERSION = "1.14.0"
PIP_SPECS = [f"pipecat-ai[silero]=={PIPECAT_VERSION}", "onnxruntime==1.32.0"]
SPEECH_WAV = ROOT / ".cache" / "speech" / "speech_8k_s16.wav"
RATE = 16000  # in and out, 16-bit mono
FRAME_MS = 20
SILENCE_S = 3.0
REPLY = ["Thanks, ", "I heard you. ", "This is a ", "mock reply."]  # two sentences for the TTS
TONE_S_PER_SENTENCE = 0.6


def ensure_venv():
    """Re-exec in .cache/pipecat-venv, creating it or installing the pinned packages if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    check = f"import importlib.metadata as m, sys; sys.exit(m.version('pipecat-ai') != '{PIPECAT_VERSION}')"
    if subprocess.run([str(py), "-c", check], capture_output=True).returncode != 0:
        print(f"installing {' '.join(PIP_SPECS)} into {VENV}", file=sys.stderr)
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PIP_SPECS])
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


ensure_venv()

# Everything below runs in the venv, so these imports come after ensure_venv() on purpose.
import numpy as np
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    InputAudioRawFrame, LLMContextFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame,
    LLMTextFrame, TranscriptionFrame, TTSAudioRawFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair, LLMUserAggregatorParams)
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.time import time_now_iso8601
from pipecat.workers.runner import WorkerRunner

STATS = {"turns": 0, "lag_max": 0.0}  # shared by all calls: one event loop, no locking needed


def load_input_loop() -> list[bytes]:
    """Speech (8 kHz WAV resampled to 16 kHz) + silence, cut into 20 ms frames, once for all calls."""
    with wave.open(str(SPEECH_WAV)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000), SPEECH_WAV
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)
    t_out = np.arange(len(x) * RATE // 8000) * (8000 / RATE)
    speech = np.interp(t_out, np.arange(len(x)), x).astype(np.int16)
    pcm = np.concatenate([speech, np.zeros(int(SILENCE_S * RATE), np.int16)]).tobytes()
    step = RATE * FRAME_MS // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def tone_chunks() -> list[bytes]:
    n = int(TONE_S_PER_SENTENCE * RATE)
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.int16).tobytes()
    step = RATE * 40 // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def blank_settings(cls, **values):
    """A service's settings with every field set (to None unless given): the fakes use none of
    them, and a field left NOT_GIVEN makes the service log an error at start."""
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "extra"]
    return cls(**{name: values.get(name) for name in names})


class FakeInput(BaseInputTransport):
    """Feeds the looped speech in real time, as a network transport's receive loop would."""

    def __init__(self, frames: list[bytes], offset: int, **kwargs):
        super().__init__(TransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE), **kwargs)
        self._bench_frames, self._bench_offset, self._bench_feeder = frames, offset, None

    async def start(self, frame):
        await super().start(frame)
        await self.set_transport_ready(frame)  # creates the transport's audio queue and task
        if not self._bench_feeder:
            self._bench_feeder = self.create_task(self._feed())

    async def _stop_feeder(self):
        if self._bench_feeder:
            await self.cancel_task(self._bench_feeder)
            self._bench_feeder = None

    async def stop(self, frame):  # EndFrame
        await self._stop_feeder()
        await super().stop(frame)

    async def cancel(self, frame):  # CancelFrame, how the benchmark ends
        await self._stop_feeder()
        await super().cancel(frame)

    async def _feed(self):
        loop = asyncio.get_running_loop()
        deadline, i, n = loop.time(), self._bench_offset, len(self._bench_frames)
        while True:
            await self.push_audio_frame(
                InputAudioRawFrame(audio=self._bench_frames[i % n], sample_rate=RATE, num_channels=1)
            )
            i += 1
            deadline += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            STATS["lag_max"] = max(STATS["lag_max"], loop.time() - deadline)


class FakeOutput(BaseOutputTransport):
    """Drops the bot's audio, but takes as long as playing it would (paced at 1x real time)."""

    def __init__(self, **kwargs):
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=RATE), **kwargs)
        self._bench_until = 0.0  # not _next: FrameProcessor's link to the next processor

    async def start(self, frame):
        await super().start(frame)
        await self.set_transport_ready(frame)  # starts the media sender that calls write_audio_frame

    async def write_audio_frame(self, frame) -> bool:
        now = time.monotonic()
        self._bench_until = max(self._bench_until, now) + len(frame.audio) / (2 * frame.sample_rate)
        await asyncio.sleep(self._bench_until - now)
        return True


class MockSTT(SegmentedSTTService):
    """The real segmented STT base (buffering, WAV per VAD segment), with a fixed transcript."""

    async def run_stt(self, audio: bytes):
        yield TranscriptionFrame(
            text="Hello, this is a test call.", user_id="", timestamp=time_now_iso8601()
        )


class MockLLM(LLMService):
    """Answers each aggregated user turn with a fixed two-sentence reply, streamed as four tokens."""

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            STATS["turns"] += 1
            await self.push_frame(LLMFullResponseStartFrame())
            for token in REPLY:
                await self.push_frame(LLMTextFrame(token))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)


class MockTTS(TTSService):
    """The real TTS base (sentence aggregation, started/stopped frames); audio is a tone, at once."""

    TONE = None

    def __init__(self, **kwargs):
        super().__init__(push_start_frame=True, push_stop_frames=True, sample_rate=RATE, **kwargs)

    async def run_tts(self, text: str, context_id: str):
        for chunk in MockTTS.TONE:
            yield TTSAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1, context_id=context_id)


def build_call(frames: list[bytes], offset: int, rtvi: bool) -> PipelineWorker:
    context = LLMContext([{"role": "system", "content": "You are a test bot."}])
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()]),
        ),
    )
    pipeline = Pipeline(
        [
            FakeInput(frames, offset),
            MockSTT(ttfs_p99_latency=0.3, settings=blank_settings(STTSettings)),
            aggregators.user(),
            MockLLM(
                settings=blank_settings(
                    LLMSettings, filter_incomplete_user_turns=False, use_provider_thinking_default=False
                )
            ),
            MockTTS(settings=blank_settings(TTSSettings)),
            FakeOutput(),
            aggregators.assistant(),
        ]
    )
    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        enable_rtvi=rtvi,
        idle_timeout_secs=None,  # a benchmark call never goes idle on purpose
    )


async def bench(args) -> dict:
    frames = load_input_loop()
    MockTTS.TONE = tone_chunks()
    workers = [
        build_call(frames, i * len(frames) // args.calls, not args.no_rtvi) for i in range(args.calls)
    ]
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(*workers)
    run_task = asyncio.create_task(runner.run())

    await asyncio.sleep(args.warmup)
    STATS["lag_max"], turns0 = 0.0, STATS["turns"]
    # thread_time() here is the event loop thread's (all of Pipecat's frame handling and the
    # fakes); the rest of the process time is mostly Silero on the analyzers' executor threads.
    cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    loop_cpu = time.thread_time() - loop0
    turns, lag = STATS["turns"] - turns0, STATS["lag_max"]

    await runner.cancel("benchmark done")
    try:
        await asyncio.wait_for(run_task, 20)
    except TimeoutError:
        print("warning: pipelines did not shut down within 20 s", file=sys.stderr)
    if run_task.done() and not run_task.cancelled() and run_task.exception():
        raise run_task.exception()

    import onnxruntime

    return {
        "framework": "pipecat",
        "version": PIPECAT_VERSION,
        "onnxruntime": onnxruntime.__version__,
        "calls": args.calls,
        "seconds": round(wall, 2),
        "cpu_cores": round(cpu / wall, 4),
        "cpu_percent_per_call": round(100 * cpu / wall / args.calls, 3),
        "cpu_cores_event_loop": round(loop_cpu / wall, 4),
        "cpu_cores_other_threads": round((cpu - loop_cpu) / wall, 4),
        "turns": turns,
        "vad": "silero",
        "rtvi": not args.no_rtvi,
        "output_paced": True,
        "feed_lag_ms_max": round(1000 * lag, 1),
        "host_cpus": os.cpu_count(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10, help="concurrent pipelines (default 10)")
    ap.add_argument("--seconds", type=float, default=30, help="measurement window (default 30)")
    ap.add_argument("--warmup", type=float, default=5, help="seconds before measuring (default 5)")
    ap.add_argument("--no-rtvi", action="store_true", help="leave out Pipecat's default RTVI")
    ap.add_argument("--log-level", default="WARNING", help="loguru level (default WARNING)")
    args = ap.parse_args()
    if args.calls < 1 or args.seconds <= 0 or args.warmup < 0:
        ap.error("need --calls >= 1, --seconds > 0, --warmup >= 0")

    # Pipecat logs every VAD event, turn and TTS request at DEBUG; printing those is not what
    # this measures.
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)

    result = asyncio.run(bench(args))
    print(json.dumps(result))
    if result["turns"] <= 0:
        sys.exit("FAIL: no LLM response in the measurement window: the conversation didn't happen")


if __name__ == "__main__":
    main()
