//! A call's media as the async side sees it: the call's slot on a media worker thread, its
//! playout ring (prompts, or the agent's replies), its capture ring (the recording, and the
//! agent's STT) and its media events. Nothing here runs per frame on the media thread; file
//! writes and prompt pacing happen in tokio tasks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley_media::codec::CodecKind;
use parley_media::engine::{
    CallHandle, CallSetup, EngineError, EventSink, MediaEngine, WebRtcSetup,
};
use parley_media::playout::{
    capture_queue, playout_queue, CaptureConsumer, PlayoutProducer, ENGINE_RATE,
};
use parley_media::session::{
    MediaEvent, MediaSession, SessionOptions, SessionParams, SessionStats,
};
use parley_media::talkspurt::TalkspurtConfig;
use parley_media::vad::SegmenterConfig;
use parley_media::wav::WavWriter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::ports::RtpPorts;
use crate::sip::sdp::{Codec, Negotiated};

/// Playout ring size: 1 s. Prompts and TTS are fed as it drains (every 100 ms).
const PLAYOUT_SAMPLES: usize = ENGINE_RATE as usize;
/// Capture ring size: 0.5 s, five times the 100 ms drain period. Rings are allocated and
/// zeroed at every call setup, so they are kept to what the pacing needs.
const CAPTURE_SAMPLES: usize = ENGINE_RATE as usize / 2;
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// With an agent listening, the capture ring is drained every other tick: streaming STT sends
/// in 50 ms frames anyway, and the agent drains what is left at each speech end. Measured:
/// 40 ms instead of 20 ms cut the agent's CPU per call by a quarter (docs/benchmarks.md).
const DRAIN_EVERY_LISTENED: Duration = Duration::from_millis(40);

/// Session parameters from an SDP negotiation.
pub fn session_params(n: &Negotiated) -> SessionParams {
    SessionParams {
        codec: match n.codec {
            Codec::Pcmu => CodecKind::Pcmu,
            Codec::Pcma => CodecKind::Pcma,
            Codec::G722 => CodecKind::G722,
            Codec::Opus => CodecKind::Opus,
        },
        payload_type: n.payload_type,
        dtmf_payload_type: n.telephone_event_pt,
        remote: n.remote_addr,
        send: n.direction.sends(),
        receive: n.direction.receives(),
    }
}

/// Session options from the config: RTP timeout, a random SSRC, VAD settings.
pub fn session_options(
    config: &crate::config::MediaConfig,
    vad: bool,
    cname: &str,
) -> SessionOptions {
    SessionOptions {
        rtp_timeout: Duration::from_secs(config.rtp_timeout_s),
        ssrc: rand::random(),
        cname: cname.to_string(),
        vad,
        vad_config: SegmenterConfig {
            threshold: config.vad_threshold as f32,
            neg_threshold: None,
            min_speech_ms: config.vad_min_speech_ms,
            min_silence_ms: config.vad_min_silence_ms,
            speech_pad_ms: config.vad_pad_ms,
        },
        talkspurts: TalkspurtConfig {
            suppress_silence: config.silence_suppression,
            keepalive: Duration::from_millis(config.keepalive_ms),
        },
    }
}

/// Parameters for a call whose media is not negotiated yet (late offer): nothing flows.
pub fn inactive_params() -> SessionParams {
    SessionParams {
        codec: CodecKind::Pcmu,
        payload_type: 0,
        dtmf_payload_type: None,
        remote: None,
        send: false,
        receive: false,
    }
}

/// A media event and when the media thread emitted it.
pub type StampedEvent = (std::time::Instant, MediaEvent);

/// Media events into a bounded tokio channel, stamped with the media thread's time (the
/// agent measures from the moment of the decision, not of its delivery); a full channel
/// drops and counts.
struct ChannelSink {
    tx: mpsc::Sender<StampedEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink for ChannelSink {
    fn push(&mut self, event: MediaEvent) {
        if self
            .tx
            .try_send((std::time::Instant::now(), event))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct CallMedia {
    handle: Option<CallHandle>,
    playout: Option<PlayoutProducer>,
    prompt: Option<JoinHandle<PlayoutProducer>>,
    events: mpsc::Receiver<StampedEvent>,
    recorder: JoinHandle<()>,
}

/// How a call's media travels.
pub enum Transport {
    /// RTP on its own ports (SIP calls).
    Rtp(RtpPorts),
    /// A browser's peer on the media workers' shared WebRTC port.
    WebRtc(Box<parley_media::webrtc::WebRtcPeer>),
}

pub struct MediaStart {
    pub transport: Transport,
    pub params: SessionParams,
    pub record_to: Option<PathBuf>,
    pub options: SessionOptions,
    pub dropped_events: Arc<AtomicU64>,
    /// Where the caller's audio goes besides the recording (the agent's STT).
    pub listener: Option<mpsc::Sender<Vec<i16>>>,
}

impl CallMedia {
    pub fn start(engine: &MediaEngine, start: MediaStart) -> Result<CallMedia, EngineError> {
        let now = std::time::Instant::now();
        let (playout_tx, playout_rx) = playout_queue(PLAYOUT_SAMPLES);
        let (capture_tx, capture_rx) = capture_queue(CAPTURE_SAMPLES);
        let session = MediaSession::new(
            now,
            start.params,
            playout_rx,
            Some(capture_tx),
            start.options,
        );
        let (events_tx, events) = mpsc::channel(64);
        let sink = Box::new(ChannelSink {
            tx: events_tx,
            dropped: start.dropped_events,
        });
        let handle = match start.transport {
            Transport::Rtp(ports) => engine.add_call(CallSetup {
                socket: ports.rtp().try_clone().map_err(EngineError::Socket)?,
                rtcp_socket: Some(ports.rtcp().try_clone().map_err(EngineError::Socket)?),
                session,
                events: sink,
                keepalive: Box::new(ports),
            })?,
            Transport::WebRtc(peer) => engine.add_webrtc_call(WebRtcSetup {
                peer: *peer,
                session,
                events: sink,
                keepalive: Box::new(()),
            })?,
        };
        let mut playout_tx = playout_tx;
        playout_tx.set_waker(handle.playout_waker());
        let recorder = tokio::spawn(record(capture_rx, start.record_to, start.listener));
        Ok(CallMedia {
            handle: Some(handle),
            playout: Some(playout_tx),
            prompt: None,
            events,
            recorder,
        })
    }

    pub fn update(&self, params: SessionParams) {
        if let Some(h) = &self.handle {
            h.update(params);
        }
    }

    /// Sends a DTMF digit to the caller (RFC 4733 when negotiated, in-band otherwise).
    pub fn send_dtmf(&self, digit: char, duration_ms: u32) {
        if let Some(h) = &self.handle {
            h.send_dtmf(digit, duration_ms);
        }
    }

    /// Hands the playout ring to an agent, which feeds it itself; `None` while a prompt
    /// started by [`CallMedia::play`] holds it.
    pub fn take_playout(&mut self) -> Option<PlayoutProducer> {
        self.playout.take()
    }

    /// Takes the playout ring back from an agent that stopped.
    pub fn give_playout(&mut self, producer: PlayoutProducer) {
        self.playout = Some(producer);
    }

    /// Plays samples at the engine rate through the playout ring, fed as it drains.
    pub fn play(&mut self, samples: Arc<Vec<i16>>) {
        let Some(mut producer) = self.playout.take() else {
            return;
        };
        self.prompt = Some(tokio::spawn(async move {
            let mut pos = 0;
            while pos < samples.len() {
                pos += producer.push(&samples[pos..]);
                if pos < samples.len() {
                    tokio::time::sleep(DRAIN_EVERY).await;
                }
            }
            while producer.queued() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            producer
        }));
    }

    /// Resolves when the prompt started by `play` has been sent completely; never resolves
    /// when nothing is playing.
    pub async fn prompt_finished(&mut self) {
        match self.prompt.as_mut() {
            Some(task) => {
                if let Ok(producer) = task.await {
                    self.playout = Some(producer);
                }
                self.prompt = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Both waits at once, for callers that select over them.
    pub fn split_waits(
        &mut self,
    ) -> (
        impl std::future::Future<Output = ()> + '_,
        impl std::future::Future<Output = Option<MediaEvent>> + '_,
    ) {
        let prompt = async {
            match self.prompt.as_mut() {
                Some(task) => {
                    if let Ok(producer) = task.await {
                        self.playout = Some(producer);
                    }
                    self.prompt = None;
                }
                None => std::future::pending().await,
            }
        };
        (prompt, async { self.events.recv().await.map(|(_, e)| e) })
    }

    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await.map(|(_, e)| e)
    }

    /// The next event with the time the media thread emitted it.
    pub async fn next_stamped_event(&mut self) -> Option<StampedEvent> {
        self.events.recv().await
    }

    /// Removes the call from its worker and waits for its final stats and the recording.
    pub async fn stop(mut self) -> Option<Box<SessionStats>> {
        if let Some(task) = self.prompt.take() {
            task.abort();
        }
        if let Some(handle) = self.handle.take() {
            handle.remove();
        }
        let stats = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some((_, event)) = self.events.recv().await {
                if let MediaEvent::Closed(stats) = event {
                    return Some(stats);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let _ = (&mut self.recorder).await;
        stats
    }
}

/// Drains the capture ring into a WAV file at the engine rate and, when an agent listens,
/// into its channel (a full channel drops the chunk: STT must never stall capture). The file
/// is created with the first audio, so calls that never send audio leave no file; it is
/// finished when the media thread drops the ring's other end.
async fn record(
    mut capture: CaptureConsumer,
    path: Option<PathBuf>,
    listener: Option<mpsc::Sender<Vec<i16>>>,
) {
    let mut writer: Option<WavWriter> = None;
    let mut path = path;
    let mut buf = vec![0i16; CAPTURE_SAMPLES];
    let every = if listener.is_some() {
        DRAIN_EVERY_LISTENED
    } else {
        DRAIN_EVERY
    };
    loop {
        let abandoned = capture.is_abandoned();
        let n = capture.slots();
        if n > 0 {
            if let Ok(chunk) = capture.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..n].copy_from_slice(b);
                chunk.commit_all();
            }
            if let Some(p) = path.take() {
                writer = match WavWriter::create(&p, ENGINE_RATE) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "cannot record the call");
                        None
                    }
                };
            }
            if let Some(w) = writer.as_mut() {
                if let Err(e) = w.write_samples(&buf[..n]) {
                    tracing::warn!(error = %e, "recording write failed");
                    writer = None;
                }
            }
            if let Some(l) = listener.as_ref() {
                let _ = l.try_send(buf[..n].to_vec());
            }
        }
        if abandoned && capture.is_empty() {
            break;
        }
        tokio::time::sleep(every).await;
    }
    if let Some(w) = writer {
        if let Err(e) = w.finalize() {
            tracing::warn!(error = %e, "cannot finish the recording");
        }
    }
}
