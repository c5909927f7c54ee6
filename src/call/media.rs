//! Minimal per-call media: G.711 RTP in and out on one port pair, symmetric RTP, a prompt
//! played at 20 ms pace, the caller recorded to WAV, and an RTP inactivity timeout.
//!
//! This is the foundation's media path; the media engine (dedicated media threads, jitter
//! buffer, more codecs, VAD) replaces it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parley_media::{rtp, wav::WavWriter, G711};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::call::ports::RtpPorts;
use crate::metrics::Metrics;
use crate::sip::sdp::{Codec, Direction, Negotiated};

/// 20 ms of 8 kHz audio.
const FRAME: usize = 160;
/// Longest gap the recording fills with silence; longer jumps are treated as a new stream.
const MAX_GAP_SAMPLES: u32 = 8000 * 10;

/// What the media needs from the negotiated session.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaParams {
    pub codec: G711,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    pub remote: Option<SocketAddr>,
    /// Our direction.
    pub direction: Direction,
}

impl MediaParams {
    pub fn from_negotiated(n: &Negotiated) -> MediaParams {
        MediaParams {
            codec: match n.codec {
                Codec::Pcmu => G711::Ulaw,
                Codec::Pcma => G711::Alaw,
            },
            payload_type: n.payload_type,
            dtmf_payload_type: n.telephone_event_pt,
            remote: n.remote_addr,
            direction: n.direction,
        }
    }
}

#[derive(Debug)]
pub enum MediaControl {
    Update(MediaParams),
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP for the configured time while the peer was supposed to send.
    RtpTimeout,
    /// The prompt has been sent completely.
    PlayoutDone,
}

pub struct MediaSetup {
    pub ports: RtpPorts,
    pub params: MediaParams,
    pub prompt: Option<Arc<Vec<i16>>>,
    pub record_to: Option<PathBuf>,
    pub rtp_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Recording placed on the RTP timeline: gaps (loss, silence suppression) become silence so
/// that the file's duration matches the call's.
struct Recorder {
    writer: WavWriter,
    first_ts: Option<u32>,
    written: u64,
    decoded: Vec<i16>,
}

impl Recorder {
    fn write(&mut self, codec: G711, timestamp: u32, payload: &[u8]) {
        let base = *self.first_ts.get_or_insert(timestamp);
        let offset = timestamp.wrapping_sub(base);
        let position = self.written;
        if offset as u64 > position && offset as u64 - position <= MAX_GAP_SAMPLES as u64 {
            let gap = (offset as u64 - position) as usize;
            let _ = self.writer.write_samples(&vec![0; gap]);
            self.written += gap as u64;
        } else if (offset as u64) < position && position - (offset as u64) < MAX_GAP_SAMPLES as u64
        {
            return; // late or duplicate packet: that stretch is already written
        } else if offset as u64 > position {
            // A jump beyond the gap limit: a new stream; continue from here.
            self.first_ts = Some(timestamp.wrapping_sub(position as u32));
        }
        self.decoded.resize(payload.len(), 0);
        codec.decode(payload, &mut self.decoded);
        if self.writer.write_samples(&self.decoded).is_ok() {
            self.written += payload.len() as u64;
        }
    }
}

fn open_recorder(path: &std::path::Path) -> Option<Recorder> {
    match WavWriter::create(path, 8000) {
        Ok(writer) => Some(Recorder {
            writer,
            first_ts: None,
            written: 0,
            decoded: Vec::with_capacity(FRAME),
        }),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot record the call");
            None
        }
    }
}

pub async fn run(
    setup: MediaSetup,
    mut control: mpsc::UnboundedReceiver<MediaControl>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let MediaSetup {
        ports,
        mut params,
        prompt,
        record_to,
        rtp_timeout,
        metrics,
    } = setup;
    let socket = match ports
        .rtp
        .try_clone()
        .and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .and_then(UdpSocket::from_std)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the RTP socket");
            let _ = events.send(MediaEvent::RtpTimeout);
            return;
        }
    };
    // The file is created with the first audio packet: a call that never sends audio leaves
    // no empty recording, and signalling-only load does not turn into file-system load.
    let mut record_to = record_to;
    let mut recorder: Option<Recorder> = None;
    let mut sender = rtp::RtpSender::new(
        rand::random(),
        params.payload_type,
        rand::random(),
        rand::random(),
    );
    let mut latched: Option<SocketAddr> = None;
    let mut played = 0usize;
    let mut playout_reported = prompt.is_none();
    if playout_reported {
        let _ = events.send(MediaEvent::PlayoutDone);
    }
    let mut last_rx = Instant::now();
    let mut timeout_reported = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut rx_buf = vec![0u8; 2048];
    let mut tx_buf = vec![0u8; 12 + FRAME];
    let mut pcm = [0i16; FRAME];
    let mut first_packet = true;

    loop {
        tokio::select! {
            r = socket.recv_from(&mut rx_buf) => {
                let Ok((n, from)) = r else { continue };
                let packet = &rx_buf[..n];
                if rtp::is_rtcp(packet) {
                    continue;
                }
                let Ok(pkt) = rtp::parse(packet) else {
                    Metrics::inc(&metrics.rtp_packets_invalid);
                    continue;
                };
                Metrics::inc(&metrics.rtp_packets_in);
                last_rx = Instant::now();
                timeout_reported = false;
                // Symmetric RTP (RFC 4961): answer where the caller's packets come from,
                // which is right behind NAT where the SDP address is not.
                latched = Some(from);
                if pkt.header.payload_type == params.payload_type && params.direction.receives() {
                    if let Some(path) = record_to.take() {
                        recorder = open_recorder(&path);
                    }
                    if let Some(rec) = recorder.as_mut() {
                        rec.write(params.codec, pkt.header.timestamp, pkt.payload);
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let expecting = params.direction.receives() && params.remote.is_some();
                if expecting && !timeout_reported && now.duration_since(last_rx) >= rtp_timeout {
                    timeout_reported = true;
                    let _ = events.send(MediaEvent::RtpTimeout);
                }
                let Some(dest) = latched.or(params.remote) else { continue };
                if !params.direction.sends() {
                    continue;
                }
                let mut frame = &pcm[..0];
                if let Some(prompt) = prompt.as_ref() {
                    if played < prompt.len() {
                        let end = (played + FRAME).min(prompt.len());
                        pcm = [0; FRAME];
                        pcm[..end - played].copy_from_slice(&prompt[played..end]);
                        played = end;
                        frame = &pcm[..];
                    } else if !playout_reported {
                        playout_reported = true;
                        let _ = events.send(MediaEvent::PlayoutDone);
                    }
                }
                if frame.is_empty() {
                    pcm = [0; FRAME];
                    frame = &pcm[..];
                }
                let header = sender.next_header(FRAME as u32, first_packet);
                first_packet = false;
                let mut payload = [0u8; FRAME];
                params.codec.encode(frame, &mut payload);
                if let Ok(len) = rtp::write_packet(&header, &payload, &mut tx_buf) {
                    if socket.send_to(&tx_buf[..len], dest).await.is_ok() {
                        Metrics::inc(&metrics.rtp_packets_out);
                    }
                }
            }
            c = control.recv() => match c {
                Some(MediaControl::Update(p)) => {
                    if p.remote != params.remote {
                        latched = None;
                    }
                    if p.payload_type != params.payload_type {
                        sender.set_payload_type(p.payload_type);
                    }
                    if p.direction.receives() && !params.direction.receives() {
                        last_rx = Instant::now();
                    }
                    params = p;
                }
                Some(MediaControl::Stop) | None => break,
            },
        }
    }
    if let Some(rec) = recorder {
        if let Err(e) = rec.writer.finalize() {
            tracing::warn!(error = %e, "cannot finish the recording");
        }
    }
    drop(ports);
}
