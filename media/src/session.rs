//! The per-call media session as a sans-I/O state machine: `handle_packet(now, …)` for what
//! arrives, `tick(now, …)` every 20 ms for what to send. No sockets, no clock, no allocation
//! after construction: the worker thread owns the socket and the time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cng::ComfortNoise;
use crate::codec::{new_codec, AudioCodec, CodecKind, OpusSettings};
use crate::dtmf::{DtmfEvent, DtmfReceiver, DtmfSender, InbandDtmfDetector};
use crate::emodel;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use crate::playout::{capture_frame, CaptureProducer, PlayoutConsumer, ENGINE_RATE};
use crate::plc::Concealer;
use crate::resample::Resampler;
use crate::rtcp::{RtcpConfig, RtcpSession};
use crate::rtp::{self, RtpSender};
use crate::stats::QualityStats;
use crate::talkspurt::{TalkspurtConfig, Talkspurts};
use crate::vad::{SegmenterConfig, SpeechEvent, VadRate, VadStream, WindowOutcome};

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
    /// Queued audio started playing: this tick's packet carries the first of it (the agent
    /// times "first audio on the wire" from this).
    PlayoutStarted,
    /// The playout queue ran dry after playing audio.
    PlayoutDrained,
    /// A DTMF digit, from RFC 4733 events or detected in the audio.
    Dtmf(DtmfEvent),
    /// The caller started or stopped speaking (Silero VAD), in ms of the call's audio.
    Speech(SpeechEvent),
    /// A window crossed the speech threshold after silence: possibly the caller starting or
    /// resuming, a `Speech` start about `min_speech_ms` later if it lasts.
    SpeechOnset,
    /// The call's transport ended on its own (a browser's ICE or DTLS closed, or never
    /// connected in time): the reason, as the call's record gives it.
    TransportClosed(&'static str),
    /// Final counters, sent when the call is removed from its worker.
    Closed(Box<SessionStats>),
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
    pub rtcp_received: u64,
    pub rtcp_sent: u64,
    pub dtmf_digits: u64,
    /// Jitter-buffer view of the caller's stream.
    pub jitter: JitterStats,
    /// Loss, jitter, RTT and the E-model MOS estimate.
    pub quality: Option<QualityStats>,
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
    /// Built with the caller's first packet: a call that never sends audio needs none.
    jitter: Option<JitterBuffer>,
    jitter_config: JitterConfig,
    concealer: Concealer,
    noise: ComfortNoise,
    /// PCM samples per frame at the codec rate.
    frame: usize,
    /// The caller's stream has started (so gaps are filled, and recordings keep time).
    started: bool,
    ssrc: Option<u32>,
    /// RFC 4733 events share the codec's RTP clock.
    dtmf: DtmfReceiver,
}

impl Pipeline {
    /// The rate the VAD runs at for this codec: 8 kHz codecs at the model's 8 kHz branch.
    fn vad_rate(&self) -> VadRate {
        VadRate::for_audio_rate(self.codec.sample_rate())
    }

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
                Resampler::for_call(rate, ENGINE_RATE, frame).ok(),
                Resampler::for_call(ENGINE_RATE, rate, ENGINE_FRAME).ok(),
            )
        };
        let rtp_ticks = codec.frame_rtp_ticks();
        // 32 slots hold 640 ms of 20 ms packets, above the 400 ms maximum delay.
        let jitter_config = JitterConfig {
            max_payload_bytes: JITTER_MAX_PAYLOAD,
            capacity_packets: 32,
            ..JitterConfig::for_clock_rate(codec.rtp_clock_rate())
        };
        Pipeline {
            kind: codec.kind(),
            jitter: None,
            jitter_config,
            concealer: Concealer::new(rate),
            noise: ComfortNoise::new(rate),
            frame,
            started: false,
            ssrc: None,
            dtmf: DtmfReceiver::new(codec.rtp_clock_rate())
                .or_else(|_| DtmfReceiver::new(8000))
                .expect("8 kHz DTMF receiver"),
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
    /// The next audio packet starts a talkspurt: it carries the marker bit (RFC 3551 §4.1).
    marker_next: bool,
    talk: Talkspurts,
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
    /// In-band DTMF detection, for peers that did not negotiate telephone-event.
    inband: InbandDtmfDetector,
    rtcp: RtcpSession,
    /// Where the peer's RTCP comes from; default: its RTP address, port + 1.
    rtcp_latched: Option<SocketAddr>,
    quality: QualityStats,
    started_at: Instant,
    vad: VadStream,
    vad_enabled: bool,
    /// Digits waiting to be sent (preallocated; never grows past DTMF_QUEUE).
    dtmf_queue: std::collections::VecDeque<(char, u32)>,
    /// The RFC 4733 event being sent and its RTP timestamp.
    dtmf_out: Option<(DtmfSender, u32)>,
    /// The in-band tone being sent: low Hz, high Hz, total samples, samples done.
    inband_out: Option<(f32, f32, u32, u32)>,
}

/// Digits queued for sending at most.
const DTMF_QUEUE: usize = 32;

/// The DTMF tone pair of a digit (ITU-T Q.23).
fn dtmf_frequencies(digit: char) -> Option<(f32, f32)> {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let digit = digit.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|k| *k == digit)
            .map(|c| (ROWS[r], COLS[c]))
    })
}

/// Options fixed for the life of a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub rtp_timeout: Duration,
    pub ssrc: u32,
    /// RTCP CNAME (RFC 3550 §6.5.1).
    pub cname: String,
    /// Feed the caller's audio to the VAD (the worker runs the model).
    pub vad: bool,
    pub vad_config: SegmenterConfig,
    /// Silence suppression and keep-alives on the sending side.
    pub talkspurts: TalkspurtConfig,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            rtp_timeout: Duration::from_secs(30),
            ssrc: 0x5041_524c,
            cname: "parley".into(),
            vad: false,
            vad_config: SegmenterConfig::default(),
            talkspurts: TalkspurtConfig::default(),
        }
    }
}

fn emodel_codec(kind: CodecKind) -> emodel::Codec {
    match kind {
        CodecKind::Pcmu | CodecKind::Pcma => emodel::Codec::G711Plc,
        CodecKind::G722 => emodel::Codec::G722Plc,
        CodecKind::Opus => emodel::Codec::Opus,
    }
}

impl MediaSession {
    pub fn new(
        now: Instant,
        params: SessionParams,
        playout: PlayoutConsumer,
        capture: Option<CaptureProducer>,
        options: SessionOptions,
    ) -> MediaSession {
        let ssrc = options.ssrc;
        let pipeline = Pipeline::new(params.codec);
        let clock = pipeline.codec.rtp_clock_rate();
        let first_ts = ssrc.rotate_left(7);
        let mut playout = playout;
        if options.talkspurts.suppress_silence {
            // The stream starts held: the first audio wakes the worker.
            playout.set_wake_wanted(true);
        }
        MediaSession {
            params,
            sender: RtpSender::new(ssrc, params.payload_type, (ssrc >> 16) as u16, first_ts),
            marker_next: true,
            talk: Talkspurts::new(options.talkspurts, now, clock, first_ts),
            latched: None,
            last_rx: now,
            rtp_timeout: options.rtp_timeout,
            timeout_reported: false,
            playout,
            was_playing: false,
            capture,
            stats: SessionStats::default(),
            codec_pcm: [0; MAX_FRAME],
            engine_pcm: [0; ENGINE_FRAME],
            payload: [0; MAX_PAYLOAD],
            jitter_payload: [0; JITTER_MAX_PAYLOAD],
            inband: InbandDtmfDetector::new(ENGINE_RATE).expect("16 kHz DTMF detector"),
            rtcp: RtcpSession::new(RtcpConfig::new(ssrc, options.cname, clock), now),
            rtcp_latched: None,
            quality: QualityStats::new(emodel_codec(params.codec)),
            started_at: now,
            vad: VadStream::with_rate(options.vad_config, pipeline.vad_rate())
                .or_else(|_| VadStream::with_rate(SegmenterConfig::default(), pipeline.vad_rate()))
                .expect("default VAD configuration"),
            vad_enabled: options.vad,
            dtmf_queue: std::collections::VecDeque::with_capacity(DTMF_QUEUE),
            dtmf_out: None,
            inband_out: None,
            pipeline,
        }
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    pub fn stats(&mut self) -> SessionStats {
        self.refresh_quality();
        let mut stats = self.stats.clone();
        stats.jitter = self.jitter_stats();
        stats.quality = Some(self.quality.clone());
        stats
    }

    fn refresh_quality(&mut self) {
        let j = self.jitter_stats();
        self.quality.update_from_session(&self.rtcp);
        self.quality.set_packets_late(j.late);
        self.quality.set_packets_discarded(j.discarded_overflow);
        self.quality.set_duplicates(j.duplicates);
        self.quality
            .set_jitter_buffer_delay_ms(j.current_delay_ms as f64);
    }

    /// The VAD stream, for the worker's batched inference.
    pub fn vad_mut(&mut self) -> &mut VadStream {
        &mut self.vad
    }

    /// A VAD window result from the worker's batch: speech start/end become events.
    pub fn on_vad_window(&mut self, outcome: WindowOutcome, emit: &mut dyn FnMut(MediaEvent)) {
        if outcome.onset {
            emit(MediaEvent::SpeechOnset);
        }
        if let Some(event) = outcome.event {
            emit(MediaEvent::Speech(event));
        }
    }

    /// RTP clock time of `now` since the session started, for jitter computation.
    fn arrival_ticks(&self, now: Instant) -> u32 {
        let clock = self.pipeline.codec.rtp_clock_rate() as u128;
        (now.duration_since(self.started_at).as_micros() * clock / 1_000_000) as u32
    }

    /// A datagram arrived on the call's RTCP port.
    pub fn handle_rtcp(&mut self, now: Instant, ntp_now: u64, from: SocketAddr, data: &[u8]) {
        if self.rtcp.on_rtcp(now, ntp_now, data).is_ok() {
            self.stats.rtcp_received += 1;
            self.rtcp_latched = Some(from);
        }
    }

    /// The peer's report on our stream that a transport's own RTCP read (WebRTC), with the
    /// round trip it measured.
    pub fn peer_report(&mut self, block: crate::rtcp::ReportBlock, rtt: Option<Duration>) {
        self.stats.rtcp_received += 1;
        self.rtcp.on_peer_report(block, rtt);
    }

    /// An RTCP report when one is due: written to `out`, sent from the RTCP port.
    pub fn poll_rtcp(&mut self, now: Instant, ntp_now: u64, out: &mut [u8]) -> Option<Transmit> {
        if !self.rtcp.is_report_due(now) {
            return None;
        }
        let to = self.rtcp_latched.or_else(|| {
            self.latched
                .or(self.params.remote)
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
        });
        let len = self
            .rtcp
            .build_report(now, ntp_now, self.rtp_now(now), out)
            .ok()?;
        let to = to?;
        self.stats.rtcp_sent += 1;
        Some(Transmit { to, len })
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
            let clock = self.pipeline.codec.rtp_clock_rate();
            self.talk.set_clock(now, clock, self.sender.timestamp());
            self.quality.set_codec(emodel_codec(params.codec));
            self.vad.set_rate(self.pipeline.vad_rate());
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
        emit: &mut dyn FnMut(MediaEvent),
    ) {
        if rtp::is_rtcp(data) {
            // RTCP multiplexed on the RTP port (RFC 5761).
            self.stats.rtcp_received += u64::from(self.rtcp.on_rtcp(now, 0, data).is_ok());
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
        let arrival = self.arrival_ticks(now);
        let h = &packet.header;
        self.rtcp
            .on_rtp_received(h.ssrc, h.sequence, h.timestamp, arrival);
        if Some(h.payload_type) == self.params.dtmf_payload_type {
            if let Some(digit) = self
                .pipeline
                .dtmf
                .on_packet(h.timestamp, h.marker, packet.payload)
            {
                self.stats.dtmf_digits += 1;
                emit(MediaEvent::Dtmf(digit));
            }
            return;
        }
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
            if let Some(j) = p.jitter.as_mut() {
                j.reset();
            }
        }
        p.ssrc = Some(packet.header.ssrc);
        p.started = true;
        let h = &packet.header;
        let config = p.jitter_config;
        let jitter = p.jitter.get_or_insert_with(|| {
            JitterBuffer::new(config)
                .or_else(|_| JitterBuffer::new(JitterConfig::for_clock_rate(8000)))
                .expect("the default jitter configuration is valid")
        });
        jitter.push(now, h.sequence, h.timestamp, h.marker, packet.payload);
    }

    /// One 20 ms frame of the caller's audio out of the jitter buffer: decoded, concealed
    /// or comfort noise, resampled to the engine rate and handed to the capture ring.
    fn receive_frame(&mut self, now: Instant, emit: &mut dyn FnMut(MediaEvent)) {
        let p = &mut self.pipeline;
        if !self.params.receive || !p.started {
            return;
        }
        let frame = p.frame.min(MAX_FRAME);
        let pcm = &mut self.codec_pcm[..frame];
        let Some(jitter) = p.jitter.as_mut() else {
            return;
        };
        match jitter.pop(now, &mut self.jitter_payload) {
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
        let frame = &self.engine_pcm[..engine];
        if self.params.dtmf_payload_type.is_none() {
            let digits = &mut self.stats.dtmf_digits;
            self.inband.process(frame, |digit| {
                *digits += 1;
                emit(MediaEvent::Dtmf(digit));
            });
        }
        if self.vad_enabled {
            match self.vad.rate() {
                // Narrowband audio goes to the VAD as decoded: the 8 kHz model is cheaper and
                // the 16 kHz copy has nothing more in it.
                VadRate::Narrowband => self.vad.push_pcm(&self.codec_pcm[..p.frame]),
                VadRate::Wideband => self.vad.push_pcm(frame),
            }
        }
        if let Some(capture) = self.capture.as_mut() {
            self.stats.capture_dropped_samples += capture_frame(capture, frame) as u64;
        }
    }

    /// Queues a DTMF digit to send: as RFC 4733 events when telephone-event was negotiated,
    /// as in-band tones otherwise. Digits are sent one after another.
    pub fn send_dtmf(&mut self, digit: char, duration_ms: u32) -> bool {
        if crate::dtmf::digit_to_event(digit).is_none() || self.dtmf_queue.len() >= DTMF_QUEUE {
            return false;
        }
        self.dtmf_queue
            .push_back((digit, duration_ms.clamp(40, 2000)));
        true
    }

    /// The next RFC 4733 packet of the digit being sent, replacing this tick's audio.
    fn send_dtmf_event(&mut self, out: &mut [u8]) -> Option<usize> {
        let pt = self.params.dtmf_payload_type?;
        if self.dtmf_out.is_none() {
            let (digit, ms) = self.dtmf_queue.pop_front()?;
            let clock = self.pipeline.codec.rtp_clock_rate();
            let sender = DtmfSender::with_clock_rate(digit, ms, clock).ok()?;
            // Every packet of an event carries the timestamp of its start (RFC 4733 §2.5.1.2).
            self.dtmf_out = Some((sender, self.sender.timestamp()));
        }
        let (sender, event_ts) = self.dtmf_out.as_mut()?;
        let event_ts = *event_ts;
        let Some(packet) = sender.next_packet() else {
            self.dtmf_out = None;
            return None;
        };
        if sender.is_done() {
            self.dtmf_out = None;
        }
        let mut header = self
            .sender
            .next_header(self.pipeline.rtp_ticks, packet.marker);
        header.timestamp = event_ts;
        header.payload_type = pt;
        let len = rtp::write_packet(&header, &packet.payload, out).ok()?;
        self.stats.packets_sent += 1;
        Some(len)
    }

    /// Without telephone-event, digits are sent as dual tones mixed into the audio.
    fn mix_inband_dtmf(&mut self) {
        if self.params.dtmf_payload_type.is_some() {
            return;
        }
        if self.inband_out.is_none() {
            let Some((digit, ms)) = self.dtmf_queue.pop_front() else {
                return;
            };
            let Some((low, high)) = dtmf_frequencies(digit) else {
                return;
            };
            self.inband_out = Some((low, high, ms * (ENGINE_RATE / 1000), 0));
        }
        if let Some((low, high, total, pos)) = self.inband_out.as_mut() {
            let rate = ENGINE_RATE as f32;
            for sample in self.engine_pcm.iter_mut() {
                if *pos >= *total {
                    break;
                }
                let t = *pos as f32 / rate;
                let tone = 5000.0
                    * ((std::f32::consts::TAU * *low * t).sin()
                        + (std::f32::consts::TAU * *high * t).sin());
                *sample = tone as i16;
                *pos += 1;
            }
            if *pos >= *total {
                self.inband_out = None;
            }
        }
    }

    /// Jitter-buffer counters (loss, lateness, delay) for stats and CDRs.
    pub fn jitter_stats(&self) -> JitterStats {
        self.pipeline
            .jitter
            .as_ref()
            .map(|j| j.stats())
            .unwrap_or_default()
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
        self.receive_frame(now, emit);
        if self.talk.holding() {
            if !self.has_audio_to_send() {
                return self.keepalive(now, out);
            }
            self.start_talkspurt(now);
        }
        self.send_frame(now, out, emit)
    }

    /// Between ticks, when the playout producer woke the worker: a held stream starts its
    /// talkspurt now, so a reply's first packet does not wait up to a tick for its slot.
    pub fn poll_talkspurt(
        &mut self,
        now: Instant,
        out: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) -> Option<Transmit> {
        if !self.has_audio_to_send() || !self.talk.can_start_now(now, self.sender.timestamp()) {
            return None;
        }
        self.start_talkspurt(now);
        self.send_frame(now, out, emit)
    }

    /// The RTP timestamp of a packet sent now: the next one of a running stream, or where
    /// the real clock has got to while the stream is held.
    fn rtp_now(&self, now: Instant) -> u32 {
        let next = self.sender.timestamp();
        let clock = self.talk.ts_at(now);
        if self.talk.holding() && clock.wrapping_sub(next) as i32 > 0 {
            clock
        } else {
            next
        }
    }

    /// Queued audio or DTMF waiting to go out.
    fn has_audio_to_send(&self) -> bool {
        self.playout.has_audio() || self.dtmf_pending()
    }

    /// A digit is being sent or waits to be.
    fn dtmf_pending(&self) -> bool {
        !self.dtmf_queue.is_empty() || self.dtmf_out.is_some() || self.inband_out.is_some()
    }

    /// A held stream starts a talkspurt: the timestamp skips the held time, the first packet
    /// carries the marker.
    fn start_talkspurt(&mut self, now: Instant) {
        let skip = self.talk.start(now, self.sender.timestamp());
        self.sender.skip_samples(skip);
        self.marker_next = true;
        self.playout.set_wake_wanted(false);
    }

    /// While held: one packet of encoded silence when a keep-alive is due.
    fn keepalive(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if !self.talk.keepalive_due(now) || !self.params.send {
            return None;
        }
        let to = self.latched.or(self.params.remote)?;
        self.start_talkspurt(now);
        self.engine_pcm.fill(0);
        let len = self.encode_packet(out);
        self.talk.keepalive_sent(now);
        self.playout.set_wake_wanted(true);
        Some(Transmit { to, len: len? })
    }

    /// One 20 ms frame of the stream: queued audio (or silence), DTMF when a digit is being
    /// sent. Holds the stream once the silence after a talkspurt has lasted the hangover.
    fn send_frame(
        &mut self,
        now: Instant,
        out: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) -> Option<Transmit> {
        // The queue is consumed even while on hold, so prompts keep their timing.
        let got = self.playout.pop_frame(&mut self.engine_pcm);
        if got > 0 {
            if !self.was_playing {
                emit(MediaEvent::PlayoutStarted);
            }
            self.was_playing = true;
        } else if self.was_playing {
            self.was_playing = false;
            emit(MediaEvent::PlayoutDrained);
        }
        let dtmf = self.dtmf_pending();
        let sent = self.transmit_frame(out);
        if self.talk.frame_sent(now, got == 0 && !dtmf) {
            // Held from now on: the producer wakes the worker with the next audio (audio
            // that raced in meanwhile starts at the next tick, the stream's next slot).
            self.playout.set_wake_wanted(true);
        }
        sent
    }

    fn transmit_frame(&mut self, out: &mut [u8]) -> Option<Transmit> {
        let to = self.latched.or(self.params.remote)?;
        if !self.params.send {
            return None;
        }
        if let Some(t) = self.send_dtmf_event(out) {
            return Some(Transmit { to, len: t });
        }
        self.mix_inband_dtmf();
        let len = self.encode_packet(out)?;
        Some(Transmit { to, len })
    }

    /// Encodes the engine frame and writes it as the stream's next RTP packet into `out`.
    fn encode_packet(&mut self, out: &mut [u8]) -> Option<usize> {
        let p = &mut self.pipeline;
        let pcm = match p.down.as_mut() {
            Some(r) => {
                let n = r.process(&self.engine_pcm, &mut self.codec_pcm);
                &self.codec_pcm[..n]
            }
            None => &self.engine_pcm[..],
        };
        let size = p.codec.encode(pcm, &mut self.payload).ok()?;
        let header = self.sender.next_header(p.rtp_ticks, self.marker_next);
        self.marker_next = false;
        let len = rtp::write_packet(&header, &self.payload[..size], out).ok()?;
        self.rtcp.on_rtp_sent(size);
        self.stats.packets_sent += 1;
        Some(len)
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
        let mut s = with_capture(t0, rx, cap_tx, 5);
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
        assert_eq!(
            events,
            vec![MediaEvent::PlayoutStarted, MediaEvent::PlayoutDrained]
        );
        assert_eq!(tx.samples_played(), 640);
    }

    const TICK_TEST: Duration = Duration::from_millis(20);

    fn dtmf_digits(events: &[MediaEvent]) -> Vec<char> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf(d) => Some(d.digit),
                _ => None,
            })
            .collect()
    }

    /// A PCMU session that captures, with the given RTP timeout in seconds.
    fn with_capture(
        t0: Instant,
        rx: crate::playout::PlayoutConsumer,
        cap_tx: crate::playout::CaptureProducer,
        timeout_s: u64,
    ) -> MediaSession {
        let options = SessionOptions {
            rtp_timeout: Duration::from_secs(timeout_s),
            ssrc: 7,
            ..SessionOptions::default()
        };
        MediaSession::new(t0, params(), rx, Some(cap_tx), options)
    }

    fn session(t0: Instant, params: SessionParams) -> MediaSession {
        let (_tx, rx) = playout_queue(100);
        MediaSession::new(t0, params, rx, None, SessionOptions::default())
    }

    fn suppressing(t0: Instant, rx: crate::playout::PlayoutConsumer) -> MediaSession {
        let options = SessionOptions {
            talkspurts: TalkspurtConfig {
                suppress_silence: true,
                keepalive: Duration::from_secs(5),
            },
            ..SessionOptions::default()
        };
        MediaSession::new(t0, params(), rx, None, options)
    }

    /// (sent at ms, marker, timestamp, first payload byte) of each packet of `ticks` ticks.
    fn run_ticks(
        s: &mut MediaSession,
        t0: Instant,
        ticks: std::ops::Range<u32>,
        events: &mut Vec<MediaEvent>,
    ) -> Vec<(u32, bool, u32)> {
        let mut out = [0u8; 1500];
        let mut sent = Vec::new();
        for i in ticks {
            if let Some(t) = s.tick(t0 + TICK_TEST * i, &mut out, &mut |e| events.push(e)) {
                let h = rtp::parse(&out[..t.len]).unwrap().header;
                sent.push((i * 20, h.marker, h.timestamp));
            }
        }
        sent
    }

    #[test]
    fn a_silent_stream_is_held_with_keepalives() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(16_000);
        let mut s = suppressing(t0, rx);
        let mut events = Vec::new();
        // Nothing to say: one keep-alive opens the path, the next comes 5 s later.
        let sent = run_ticks(&mut s, t0, 0..300, &mut events);
        assert_eq!(sent.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 5000]);
        assert!(
            sent.iter().all(|p| p.1),
            "each keep-alive is its own talkspurt"
        );
        assert_eq!(
            sent[1].2.wrapping_sub(sent[0].2),
            40_000,
            "timestamps follow the real clock across the held time"
        );
        // 100 ms of audio at tick 300: five packets of it, the hangover, then held again.
        tx.push(&[3000; 1600]);
        let sent = run_ticks(&mut s, t0, 300..340, &mut events);
        let times: Vec<u32> = sent.iter().map(|p| p.0).collect();
        let want: Vec<u32> = (300..300 + 5 + crate::talkspurt::HANGOVER_FRAMES)
            .map(|i| i * 20)
            .collect();
        assert_eq!(times, want);
        assert!(
            sent[0].1 && sent[1..].iter().all(|p| !p.1),
            "marker on the first only"
        );
        assert_eq!(
            events,
            vec![MediaEvent::PlayoutStarted, MediaEvent::PlayoutDrained]
        );
    }

    #[test]
    fn queued_audio_starts_a_held_stream_between_ticks() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(16_000);
        let mut s = suppressing(t0, rx);
        let mut events = Vec::new();
        let first = run_ticks(&mut s, t0, 0..50, &mut events);
        let mut out = [0u8; 1500];
        // Nothing queued: nothing to start.
        let mid = t0 + Duration::from_millis(1007);
        assert!(s
            .poll_talkspurt(mid, &mut out, &mut |e| events.push(e))
            .is_none());
        tx.push(&[3000; 640]);
        let t = s
            .poll_talkspurt(mid, &mut out, &mut |e| events.push(e))
            .expect("sent at once, 7 ms into the tick");
        let h = rtp::parse(&out[..t.len]).unwrap().header;
        assert!(h.marker);
        assert_eq!(
            h.timestamp.wrapping_sub(first[0].2),
            1007 * 8,
            "stamped with the real time it starts at"
        );
        assert_eq!(events, vec![MediaEvent::PlayoutStarted]);
        // The talkspurt goes on at the ticks; a second poll has nothing more to start.
        assert!(s.poll_talkspurt(mid, &mut out, &mut |_| {}).is_none());
        let next = run_ticks(&mut s, t0, 51..52, &mut events);
        assert_eq!(next[0].2, h.timestamp.wrapping_add(160));
        assert!(!next[0].1);
    }

    #[test]
    fn a_talkspurt_never_starts_inside_the_last_packet() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(16_000);
        let mut s = suppressing(t0, rx);
        let mut events = Vec::new();
        // The keep-alive at 0 ms covers 0-20 ms of the stream's timeline.
        assert_eq!(run_ticks(&mut s, t0, 0..1, &mut events).len(), 1);
        tx.push(&[3000; 640]);
        let mut out = [0u8; 1500];
        let early = t0 + Duration::from_millis(7);
        assert!(s.poll_talkspurt(early, &mut out, &mut |_| {}).is_none());
        // The next tick starts it, in the stream's next slot.
        let sent = run_ticks(&mut s, t0, 1..2, &mut events);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].1);
    }

    #[test]
    fn a_continuous_stream_ignores_wakes() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(16_000);
        let mut s = with_capture(t0, rx, capture_queue(100).0, 5);
        tx.push(&[3000; 640]);
        let mut out = [0u8; 1500];
        let mid = t0 + Duration::from_millis(7);
        assert!(s.poll_talkspurt(mid, &mut out, &mut |_| {}).is_none());
        let sent = run_ticks(&mut s, t0, 0..20, &mut Vec::new());
        assert_eq!(sent.len(), 20, "a packet every tick");
    }

    #[test]
    fn rfc4733_digits_become_events_once() {
        let t0 = Instant::now();
        let mut s = session(t0, params());
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut events = Vec::new();
        let mut sender = crate::dtmf::DtmfSender::new('5', 120).unwrap();
        let mut seq = 10u16;
        while let Some(p) = sender.next_packet() {
            let header = RtpHeader {
                marker: p.marker,
                payload_type: 101,
                sequence: seq,
                timestamp: 8000,
                ssrc: 42,
            };
            let mut buf = [0u8; 64];
            let n = rtp::write_packet(&header, &p.payload, &mut buf).unwrap();
            s.handle_packet(t0, from, &buf[..n], &mut |e| events.push(e));
            seq += 1;
        }
        let digits = dtmf_digits(&events);
        assert_eq!(digits, vec!['5']);
        assert_eq!(s.stats().dtmf_digits, 1);
    }

    /// Runs `a`'s output into `b` for `ticks` ticks and returns the digits `b` reports.
    fn relay_digits(a: &mut MediaSession, b: &mut MediaSession, ticks: u32) -> Vec<char> {
        let t0 = Instant::now();
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut out = [0u8; 1500];
        let mut sink = [0u8; 1500];
        let mut digits = Vec::new();
        for i in 0..ticks {
            let now = t0 + TICK_TEST * i;
            if let Some(t) = a.tick(now, &mut out, &mut |_| {}) {
                b.handle_packet(now, from, &out[..t.len], &mut |e| {
                    if let MediaEvent::Dtmf(d) = e {
                        digits.push(d.digit)
                    }
                });
            }
            b.tick(now, &mut sink, &mut |e| {
                if let MediaEvent::Dtmf(d) = e {
                    digits.push(d.digit)
                }
            });
        }
        digits
    }

    #[test]
    fn digits_sent_arrive_as_events_or_tones() {
        let t0 = Instant::now();
        // Negotiated telephone-event: RFC 4733 packets.
        let mut a = session(t0, params());
        let mut b = session(t0, params());
        assert!(a.send_dtmf('7', 100));
        assert!(a.send_dtmf('#', 100));
        assert!(!a.send_dtmf('x', 100), "not a DTMF digit");
        assert_eq!(relay_digits(&mut a, &mut b, 40), vec!['7', '#']);
        // No telephone-event: in-band tones, found by the detector on the other side.
        let inband = SessionParams {
            dtmf_payload_type: None,
            ..params()
        };
        let mut a = session(t0, inband);
        let mut b = session(t0, inband);
        assert!(a.send_dtmf('9', 120));
        assert_eq!(relay_digits(&mut a, &mut b, 60), vec!['9']);
    }

    #[test]
    fn inband_digits_are_detected_without_telephone_event() {
        let t0 = Instant::now();
        let mut s = session(
            t0,
            SessionParams {
                dtmf_payload_type: None,
                ..params()
            },
        );
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut out = [0u8; 1500];
        let mut events = Vec::new();
        // '1' = 697 Hz + 1209 Hz for 200 ms, then 200 ms of silence, as PCMU at 8 kHz.
        for i in 0..40u16 {
            let pcm: Vec<i16> = (0..160)
                .map(|k| {
                    let t = (i as f64 * 160.0 + k as f64) / 8000.0;
                    if i < 10 {
                        (6000.0
                            * ((std::f64::consts::TAU * 697.0 * t).sin()
                                + (std::f64::consts::TAU * 1209.0 * t).sin()))
                            as i16
                    } else {
                        0
                    }
                })
                .collect();
            let mut payload = [0u8; 160];
            crate::g711::encode_ulaw(&pcm, &mut payload);
            let now = t0 + TICK_TEST * i as u32;
            s.handle_packet(now, from, &packet(i, 0, &payload), &mut |e| events.push(e));
            s.tick(now, &mut out, &mut |e| events.push(e));
        }
        let digits = dtmf_digits(&events);
        assert_eq!(digits, vec!['1']);
    }

    #[test]
    fn rtcp_sender_reports_go_out_and_stats_carry_a_mos() {
        let t0 = Instant::now();
        let (mut tx, rx) = playout_queue(64_000);
        tx.push(&[500; 64_000]);
        let mut s = MediaSession::new(t0, params(), rx, None, SessionOptions::default());
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut out = [0u8; 1500];
        let mut rtcp_out = [0u8; 1500];
        let mut reports = Vec::new();
        for i in 0..500u16 {
            let now = t0 + TICK_TEST * i as u32;
            s.handle_packet(now, from, &packet(i, 0, &[0xFF; 160]), &mut |_| {});
            s.tick(now, &mut out, &mut |_| {});
            if let Some(t) = s.poll_rtcp(now, 0x1234_5678_0000_0000, &mut rtcp_out) {
                reports.push((t, rtcp_out[1]));
            }
        }
        assert!(reports.len() >= 2, "{} reports in 10 s", reports.len());
        let (first, pt) = reports[0];
        assert_eq!(first.to.port(), 5001, "RTCP goes to the RTP port + 1");
        assert_eq!(pt, 200, "we send RTP, so the report is a sender report");
        let stats = s.stats();
        assert_eq!(stats.rtcp_sent as usize, reports.len());
        let mos = stats.quality.unwrap().mos;
        assert!(mos > 4.0, "clean stream MOS {mos}");
    }

    #[test]
    fn received_audio_is_continuous_through_jitter_and_loss() {
        let t0 = Instant::now();
        let (_tx, rx) = playout_queue(100);
        let (cap_tx, mut cap_rx) = capture_queue(64_000);
        let mut s = with_capture(t0, rx, cap_tx, 5);
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
        let mut s = MediaSession::new(
            t0,
            params(),
            rx,
            None,
            SessionOptions {
                rtp_timeout: Duration::from_secs(2),
                ssrc: 7,
                ..SessionOptions::default()
            },
        );
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
        let mut s = MediaSession::new(
            t0,
            held,
            rx,
            None,
            SessionOptions {
                rtp_timeout: Duration::from_secs(2),
                ssrc: 7,
                ..SessionOptions::default()
            },
        );
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
        let mut s = with_capture(t0, rx, cap_tx, 2);
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
