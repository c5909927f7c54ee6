//! The per-call media session as a sans-I/O state machine: `handle_packet(now, …)` for what
//! arrives, `tick(now, …)` every 20 ms for what to send. No sockets, no clock, no allocation
//! after construction: the worker thread owns the socket and the time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cng::ComfortNoise;
use crate::codec::{new_codec, AudioCodec, CodecKind, OpusSettings};
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use crate::playout::{capture_frame, CaptureProducer, PlayoutConsumer, ENGINE_RATE};
use crate::plc::Concealer;
use crate::resample::Resampler;
use crate::rtp::{self, RtpSender};

/// 20 ms at the engine rate.
pub const ENGINE_FRAME: usize = (ENGINE_RATE / 50) as usize;
/// 20 ms at the highest codec rate (48 kHz).
const MAX_FRAME: usize = 960;
/// Largest RTP payload we produce or accept.
const MAX_PAYLOAD: usize = 1500;
/// Largest payload the jitter buffer keeps: 20 ms of G.711/G.722 is 160 bytes, of Opus at
/// voice bitrates under 200. Larger packets are counted and dropped.
const JITTER_MAX_PAYLOAD: usize = 512;

/// What was negotiated for the call, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionParams {
    pub codec: CodecKind,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    /// Where to send until the caller's own packets tell us better (symmetric RTP).
    pub remote: Option<SocketAddr>,
    /// We send media (our direction includes send).
    pub send: bool,
    /// We expect media (our direction includes receive).
    pub receive: bool,
}

/// What a session reports to the call layer.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// No RTP for the configured time while the peer was expected to send.
    RtpTimeout,
    /// The playout queue ran dry after playing audio.
    PlayoutDrained,
    /// Final counters, sent when the call is removed from its worker.
    Closed(SessionStats),
}

/// Per-call counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_invalid: u64,
    pub packets_other_payload: u64,
    pub decode_errors: u64,
    pub capture_dropped_samples: u64,
}

/// The codec and the resamplers between its rate and the engine rate, rebuilt when the
/// negotiated codec changes (never per frame).
struct Pipeline {
    kind: CodecKind,
    codec: Box<dyn AudioCodec>,
    /// Codec rate → engine rate, for what the caller sends.
    up: Option<Resampler>,
    /// Engine rate → codec rate, for what we send.
    down: Option<Resampler>,
    rtp_ticks: u32,
    jitter: JitterBuffer,
    concealer: Concealer,
    noise: ComfortNoise,
    /// PCM samples per frame at the codec rate.
    frame: usize,
    /// The caller's stream has started (so gaps are filled, and recordings keep time).
    started: bool,
    ssrc: Option<u32>,
}

impl Pipeline {
    fn new(kind: CodecKind) -> Pipeline {
        let codec = new_codec(kind, OpusSettings::default())
            .or_else(|_| new_codec(CodecKind::Pcmu, OpusSettings::default()))
            .expect("G.711 always constructs");
        let rate = codec.sample_rate();
        let frame = codec.frame_samples();
        let (up, down) = if rate == ENGINE_RATE {
            (None, None)
        } else {
            (
                Resampler::new(rate, ENGINE_RATE, frame).ok(),
                Resampler::new(ENGINE_RATE, rate, ENGINE_FRAME).ok(),
            )
        };
        let rtp_ticks = codec.frame_rtp_ticks();
        let jitter_config = JitterConfig {
            max_payload_bytes: JITTER_MAX_PAYLOAD,
            ..JitterConfig::for_clock_rate(codec.rtp_clock_rate())
        };
        let jitter = JitterBuffer::new(jitter_config)
            .or_else(|_| JitterBuffer::new(JitterConfig::for_clock_rate(8000)))
            .expect("the default jitter configuration is valid");
        Pipeline {
            kind: codec.kind(),
            jitter,
            concealer: Concealer::new(rate),
            noise: ComfortNoise::new(rate),
            frame,
            started: false,
            ssrc: None,
            codec,
            up,
            down,
            rtp_ticks,
        }
    }
}

/// A packet to send: `len` bytes at the start of the tick's output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub len: usize,
}

pub struct MediaSession {
    params: SessionParams,
    pipeline: Pipeline,
    sender: RtpSender,
    first_packet: bool,
    latched: Option<SocketAddr>,
    last_rx: Instant,
    rtp_timeout: Duration,
    timeout_reported: bool,
    playout: PlayoutConsumer,
    was_playing: bool,
    capture: Option<CaptureProducer>,
    stats: SessionStats,
    codec_pcm: [i16; MAX_FRAME],
    engine_pcm: [i16; ENGINE_FRAME],
    payload: [u8; MAX_PAYLOAD],
    jitter_payload: [u8; JITTER_MAX_PAYLOAD],
}

impl MediaSession {
    pub fn new(
        now: Instant,
        params: SessionParams,
        playout: PlayoutConsumer,
        capture: Option<CaptureProducer>,
        rtp_timeout: Duration,
        ssrc: u32,
    ) -> MediaSession {
        MediaSession {
            params,
            pipeline: Pipeline::new(params.codec),
            sender: RtpSender::new(
                ssrc,
                params.payload_type,
                (ssrc >> 16) as u16,
                ssrc.rotate_left(7),
            ),
            first_packet: true,
            latched: None,
            last_rx: now,
            rtp_timeout,
            timeout_reported: false,
            playout,
            was_playing: false,
            capture,
            stats: SessionStats::default(),
            codec_pcm: [0; MAX_FRAME],
            engine_pcm: [0; ENGINE_FRAME],
            payload: [0; MAX_PAYLOAD],
            jitter_payload: [0; JITTER_MAX_PAYLOAD],
        }
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    pub fn stats(&self) -> SessionStats {
        self.stats.clone()
    }

    /// Applies renegotiated parameters (re-INVITE or a late SDP answer).
    pub fn update(&mut self, now: Instant, params: SessionParams) {
        if params.remote != self.params.remote {
            self.latched = None;
        }
        if params.payload_type != self.params.payload_type {
            self.sender.set_payload_type(params.payload_type);
        }
        if params.codec != self.pipeline.kind {
            self.pipeline = Pipeline::new(params.codec);
        }
        if params.receive && !self.params.receive {
            // Media resumes (unhold): the inactivity clock starts again.
            self.last_rx = now;
            self.timeout_reported = false;
        }
        self.params = params;
    }

    /// A datagram arrived on the call's RTP port.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        _emit: &mut dyn FnMut(MediaEvent),
    ) {
        if rtp::is_rtcp(data) {
            return;
        }
        let Ok(packet) = rtp::parse(data) else {
            self.stats.packets_invalid += 1;
            return;
        };
        self.stats.packets_received += 1;
        self.last_rx = now;
        self.timeout_reported = false;
        // Symmetric RTP (RFC 4961): answer where the packets come from, which is right behind
        // NAT where the SDP address is not.
        self.latched = Some(from);
        if packet.header.payload_type != self.params.payload_type {
            self.stats.packets_other_payload += 1;
            return;
        }
        if !self.params.receive {
            return;
        }
        let p = &mut self.pipeline;
        if p.ssrc.is_some_and(|s| s != packet.header.ssrc) {
            // A new source (e.g. a transfer or an SBC switching streams): start over.
            p.jitter.reset();
        }
        p.ssrc = Some(packet.header.ssrc);
        p.started = true;
        let h = &packet.header;
        p.jitter
            .push(now, h.sequence, h.timestamp, h.marker, packet.payload);
    }

    /// One 20 ms frame of the caller's audio out of the jitter buffer: decoded, concealed
    /// or comfort noise, resampled to the engine rate and handed to the capture ring.
    fn receive_frame(&mut self, now: Instant) {
        let p = &mut self.pipeline;
        if !self.params.receive || !p.started {
            return;
        }
        let frame = p.frame.min(MAX_FRAME);
        let pcm = &mut self.codec_pcm[..frame];
        match p.jitter.pop(now, &mut self.jitter_payload) {
            Playout::Packet { len, .. } => match p.codec.decode(&self.jitter_payload[..len], pcm) {
                Ok(n) if n == frame => {
                    p.concealer.good_frame(pcm);
                    p.noise.observe(pcm);
                }
                _ => {
                    self.stats.decode_errors += 1;
                    p.concealer.conceal(pcm);
                }
            },
            Playout::Lost => {
                // The codec's own concealment (Opus) when it has one, ours otherwise.
                if p.codec.conceal(pcm).is_none() {
                    p.concealer.conceal(pcm);
                }
            }
            Playout::Empty | Playout::Buffering => p.noise.fill(pcm),
        }
        let engine = match p.up.as_mut() {
            Some(r) => r.process(pcm, &mut self.engine_pcm),
            None => {
                let n = frame.min(ENGINE_FRAME);
                self.engine_pcm[..n].copy_from_slice(&pcm[..n]);
                n
            }
        };
        if let Some(capture) = self.capture.as_mut() {
            self.stats.capture_dropped_samples +=
                capture_frame(capture, &self.engine_pcm[..engine]) as u64;
        }
    }

    /// Jitter-buffer counters (loss, lateness, delay) for stats and CDRs.
    pub fn jitter_stats(&self) -> JitterStats {
        self.pipeline.jitter.stats()
    }

    /// The 20 ms tick: timeout check, then one packet of playout if we send.
    pub fn tick(
        &mut self,
        now: Instant,
        out: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) -> Option<Transmit> {
        let expecting = self.params.receive && self.params.remote.is_some();
        if expecting
            && !self.timeout_reported
            && now.duration_since(self.last_rx) >= self.rtp_timeout
        {
            self.timeout_reported = true;
            emit(MediaEvent::RtpTimeout);
        }
        self.receive_frame(now);
        // The queue is consumed even while on hold, so prompts keep their timing.
        let got = self.playout.pop_frame(&mut self.engine_pcm);
        if got > 0 {
            self.was_playing = true;
        } else if self.was_playing {
            self.was_playing = false;
            emit(MediaEvent::PlayoutDrained);
        }
        let to = self.latched.or(self.params.remote)?;
        if !self.params.send {
            return None;
        }
        let p = &mut self.pipeline;
        let pcm = match p.down.as_mut() {
            Some(r) => {
                let n = r.process(&self.engine_pcm, &mut self.codec_pcm);
                &self.codec_pcm[..n]
            }
            None => &self.engine_pcm[..],
        };
        let size = p.codec.encode(pcm, &mut self.payload).ok()?;
        let header = self.sender.next_header(p.rtp_ticks, self.first_packet);
        self.first_packet = false;
        let len = rtp::write_packet(&header, &self.payload[..size], out).ok()?;
        self.stats.packets_sent += 1;
        Some(Transmit { to, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playout::{capture_queue, playout_queue};
    use crate::rtp::RtpHeader;

    fn params() -> SessionParams {
        SessionParams {
            codec: CodecKind::Pcmu,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            remote: Some("127.0.0.1:4000".parse().unwrap()),
            send: true,
            receive: true,
        }
    }

    fn packet(seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
        let header = RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc: 42,
        };
        let mut buf = vec![0u8; 12 + payload.len()];
        let n = rtp::write_packet(&header, payload, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn plays_queued_audio_and_latches_to_the_sender() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(16000);
        let (cap_tx, cap_rx) = capture_queue(16000);
        let mut s = MediaSession::new(t0, params(), rx, Some(cap_tx), Duration::from_secs(5), 7);
        let mut events = Vec::new();
        let mut out = [0u8; 1500];
        tx.push(&[1000; 640]);
        let t = s.tick(t0, &mut out, &mut |e| events.push(e)).unwrap();
        assert_eq!(t.to, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(t.len, 12 + 160);
        let pkt = rtp::parse(&out[..t.len]).unwrap();
        assert!(pkt.header.marker, "first packet carries the marker");
        // The resampler's start-up delay means the first frame is mostly its initial silence.
        assert_eq!(pkt.payload.len(), 160, "20 ms of PCMU");
        // A packet from another address moves our destination there.
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        s.handle_packet(t0, from, &packet(1, 0, &[0xFF; 160]), &mut |e| {
            events.push(e)
        });
        assert_eq!(
            cap_rx.slots(),
            0,
            "the caller's audio waits in the jitter buffer"
        );
        // Played audio reaches the wire at its level once the resampler is primed.
        let mut out2 = [0u8; 1500];
        let t2 = s
            .tick(t0 + TICK_TEST, &mut out2, &mut |e| events.push(e))
            .unwrap();
        let pkt2 = rtp::parse(&out2[..t2.len]).unwrap();
        let level = crate::g711::ulaw_decode(pkt2.payload[100]);
        assert!((900..=1100).contains(&level), "{level}");
        assert_eq!(
            cap_rx.slots(),
            320,
            "each tick captures one 20 ms frame at 16 kHz"
        );
        let t = s
            .tick(t0 + TICK_TEST, &mut out, &mut |e| events.push(e))
            .unwrap();
        assert_eq!(t.to, from);
        let t = s.tick(t0 + TICK_TEST * 2, &mut out, &mut |e| events.push(e));
        assert!(t.is_some(), "silence keeps flowing");
        assert_eq!(events, vec![MediaEvent::PlayoutDrained]);
        assert_eq!(tx.samples_played(), 640);
    }

    const TICK_TEST: Duration = Duration::from_millis(20);

    #[test]
    fn received_audio_is_continuous_through_jitter_and_loss() {
        let t0 = Instant::now();
        let (_tx, rx) = playout_queue(100);
        let (cap_tx, mut cap_rx) = capture_queue(64_000);
        let mut s = MediaSession::new(t0, params(), rx, Some(cap_tx), Duration::from_secs(5), 7);
        let mut out = [0u8; 1500];
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // A 400 Hz tone in 20 ms packets; packet 30 is lost, 40 and 41 arrive swapped.
        let tone =
            |i: usize| (8000.0 * (i as f64 * 400.0 * std::f64::consts::TAU / 8000.0).sin()) as i16;
        let mut order: Vec<u16> = (0..100).filter(|i| *i != 30).collect();
        order.swap(39, 40);
        let mut pending = order.into_iter().peekable();
        let mut ticks = 0;
        for tick in 0..110u32 {
            let now = t0 + TICK_TEST * tick;
            while let Some(&seq) = pending.peek() {
                if seq as u32 > tick {
                    break;
                }
                pending.next();
                let pcm: Vec<i16> = (0..160).map(|k| tone(seq as usize * 160 + k)).collect();
                let mut payload = [0u8; 160];
                crate::g711::encode_ulaw(&pcm, &mut payload);
                s.handle_packet(now, from, &packet(seq, 0, &payload), &mut |_| {});
            }
            s.tick(now, &mut out, &mut |_| {});
            ticks += 1;
        }
        let stats = s.jitter_stats();
        assert_eq!(stats.lost, 1, "{stats:?}");
        // One 20 ms frame per tick from the first packet on: no gaps, no stalls.
        assert_eq!(cap_rx.slots(), ticks * 320);
        let chunk = cap_rx.read_chunk(cap_rx.slots()).unwrap();
        let (a, b) = chunk.as_slices();
        let captured: Vec<i16> = a.iter().chain(b).copied().collect();
        chunk.commit_all();
        // The concealed stretch keeps the tone's energy instead of a hole.
        let rms = |x: &[i16]| {
            (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let loud_frames = captured.chunks(320).filter(|f| rms(f) > 2000.0).count();
        assert!(loud_frames >= 95, "{loud_frames} frames carry the tone");
    }

    #[test]
    fn rtp_timeout_fires_once_and_not_on_hold() {
        let t0 = Instant::now();
        let (_tx, rx) = playout_queue(100);
        let mut s = MediaSession::new(t0, params(), rx, None, Duration::from_secs(2), 7);
        let mut events = Vec::new();
        let mut out = [0u8; 1500];
        s.tick(t0 + Duration::from_secs(1), &mut out, &mut |e| {
            events.push(e)
        });
        assert!(events.is_empty());
        s.tick(t0 + Duration::from_secs(2), &mut out, &mut |e| {
            events.push(e)
        });
        s.tick(t0 + Duration::from_secs(3), &mut out, &mut |e| {
            events.push(e)
        });
        assert_eq!(events, vec![MediaEvent::RtpTimeout]);
        // On hold (peer does not send to us) there is no timeout.
        let (_tx, rx) = playout_queue(100);
        let held = SessionParams {
            receive: false,
            ..params()
        };
        let mut s = MediaSession::new(t0, held, rx, None, Duration::from_secs(2), 7);
        events.clear();
        s.tick(t0 + Duration::from_secs(10), &mut out, &mut |e| {
            events.push(e)
        });
        assert!(events.is_empty());
    }

    #[test]
    fn other_payload_types_and_garbage_are_counted_not_played() {
        let t0 = Instant::now();
        let (_tx, rx) = playout_queue(100);
        let (cap_tx, cap_rx) = capture_queue(16000);
        let mut s = MediaSession::new(t0, params(), rx, Some(cap_tx), Duration::from_secs(2), 7);
        let mut emit = |_e: MediaEvent| {};
        s.handle_packet(
            t0,
            "127.0.0.1:1".parse().unwrap(),
            &packet(1, 8, &[0xD5; 160]),
            &mut emit,
        );
        s.handle_packet(t0, "127.0.0.1:1".parse().unwrap(), b"junk", &mut emit);
        let stats = s.stats();
        assert_eq!(stats.packets_other_payload, 1);
        assert_eq!(stats.packets_invalid, 1);
        assert_eq!(cap_rx.slots(), 0);
    }
}
