//! A browser-like WebRTC client for tests: a real UDP socket on 127.0.0.1, a str0m `Rtc` as a
//! browser runs it (full ICE, controlling, the offerer), audio only, Opus only, RTP mode (the
//! test encodes and decodes the Opus itself and sees every RTP packet).
//!
//! Use: [`WebRtcClient::offer`] → the server's answer → [`WebRtcClient::accept_answer`], then
//! [`WebRtcClient::pump`] (or [`pump_all`] for several clients) until
//! [`WebRtcClient::is_connected`]; [`WebRtcClient::send_audio_20ms`] sends one frame, and
//! what arrives is counted in [`ClientStats`] and kept, decoded at 48 kHz, in
//! [`WebRtcClient::received_pcm`].
//!
//! str0m's rule: after every mutation (`handle_input`, a write) drain `poll_output` until it
//! returns `Output::Timeout`; this client does so in one place ([`WebRtcClient::drain`]).

#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use parley_media::codec::{AudioCodec, OpusCodec, OpusSettings};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// RMS (of a decoded 20 ms frame) above which the frame counts as audio rather than silence
/// or comfort noise (full scale is 32767; the engine's comfort noise stays under 500).
pub const NON_SILENT_RMS: f64 = 1_000.0;

/// What the client saw and did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ClientStats {
    /// Datagrams read from the socket.
    pub datagrams_in: u64,
    /// Decrypted RTP packets received (any payload type).
    pub rtp_received: u64,
    /// Received Opus packets that failed to decode.
    pub decode_errors: u64,
    /// Received Opus packets that decoded to a frame louder than [`NON_SILENT_RMS`].
    pub non_silent_packets: u64,
    /// Sum of squared samples (48 kHz) of those non-silent frames.
    pub non_silent_energy: f64,
    /// RTP packets this client wrote.
    pub rtp_sent: u64,
}

pub struct WebRtcClient {
    socket: UdpSocket,
    local: SocketAddr,
    rtc: Rtc,
    mid: Mid,
    pending: Option<SdpPendingOffer>,
    /// Opus's payload type, once the answer is in.
    pt: Option<Pt>,
    tx_ssrc: Option<Ssrc>,
    /// Extended sequence number and RTP timestamp (48 kHz) of the next packet.
    seq: u64,
    rtp_ts: u32,
    next_timeout: Instant,
    connected: bool,
    /// ICE went Disconnected, or str0m failed.
    closed: bool,
    enc16: OpusCodec,
    enc48: OpusCodec,
    dec: OpusCodec,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    rx_buf: Vec<u8>,
    pub stats: ClientStats,
    /// Every received Opus packet decoded at 48 kHz, in arrival order.
    pub received_pcm: Vec<i16>,
}

impl WebRtcClient {
    /// A client on a fresh UDP socket on 127.0.0.1.
    pub fn new() -> WebRtcClient {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the client socket");
        let local = socket.local_addr().expect("client address");
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .set_ice_lite(false)
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"));
        let opus = |sample_rate| {
            OpusCodec::new(OpusSettings {
                sample_rate,
                bitrate: 48_000,
                ..OpusSettings::default()
            })
            .expect("opus codec")
        };
        WebRtcClient {
            socket,
            local,
            rtc,
            // Replaced by the offer's.
            mid: Mid::from("0"),
            pending: None,
            pt: None,
            tx_ssrc: None,
            seq: 1_000,
            rtp_ts: 90_000,
            next_timeout: now,
            connected: false,
            closed: false,
            enc16: opus(16_000),
            enc48: opus(48_000),
            dec: opus(48_000),
            pcm: vec![0; 5_760],
            payload: vec![0; 1_500],
            rx_buf: vec![0; 2_048],
            stats: ClientStats::default(),
            received_pcm: Vec::with_capacity(48_000 * 4),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SDP offer (one sendrecv audio section, Opus, our host candidate).
    pub fn offer(&mut self) -> String {
        let mut change = self.rtc.sdp_api();
        self.mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        self.pending = Some(pending);
        let sdp = offer.to_sdp_string();
        self.drain();
        sdp
    }

    /// Takes the server's answer: ICE starts checking at once.
    pub fn accept_answer(&mut self, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("the answer parses");
        let pending = self.pending.take().expect("offer() first");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("str0m accepts the answer");
        self.pt = self.opus_pt();
        self.drain();
    }

    /// Opus's payload type in the negotiated m-line.
    fn opus_pt(&self) -> Option<Pt> {
        let pts = self.rtc.media(self.mid)?.remote_pts().to_vec();
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus && pts.contains(&p.pt()))
            .map(|p| p.pt())
    }

    pub fn payload_type(&self) -> Option<u8> {
        self.pt.map(|p| *p)
    }

    /// ICE and DTLS are done: SRTP is keyed both ways.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// ICE disconnected (or str0m failed) since the client connected.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads the socket, runs str0m's timers and sends what it has until `deadline`; with a
    /// deadline already past it handles what is waiting and returns.
    pub fn pump(&mut self, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= self.next_timeout {
                self.input(Input::Timeout(now));
                if self.next_timeout <= now {
                    // Never spin on a timer that does not move.
                    self.next_timeout = now + Duration::from_millis(1);
                }
                continue;
            }
            let until = self.next_timeout.min(deadline);
            let received = if until > now {
                // The kernel rounds this up to its tick; str0m's timers tolerate that.
                self.socket
                    .set_read_timeout(Some(until - now))
                    .expect("read timeout");
                self.socket.recv_from(&mut self.rx_buf)
            } else {
                self.socket.set_nonblocking(true).expect("nonblocking");
                let r = self.socket.recv_from(&mut self.rx_buf);
                self.socket.set_nonblocking(false).expect("blocking");
                r
            };
            match received {
                Ok((n, from)) => self.datagram(n, from),
                Err(e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                        && Instant::now() >= deadline =>
                {
                    return
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // ICMP port unreachable from an earlier send and the like.
                Err(_) => {}
            }
        }
    }

    /// Pumps until connected or `limit` has passed; true when connected.
    pub fn connect(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.connected && Instant::now() < deadline {
            self.pump((Instant::now() + Duration::from_millis(5)).min(deadline));
        }
        self.connected
    }

    fn datagram(&mut self, n: usize, from: SocketAddr) {
        self.stats.datagrams_in += 1;
        let now = Instant::now();
        let Ok(contents) = self.rx_buf[..n].try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        );
        if !self.rtc.accepts(&input) {
            return;
        }
        if self.rtc.handle_input(input).is_err() {
            self.closed = true;
            return;
        }
        self.drain();
    }

    fn input(&mut self, input: Input) {
        if self.rtc.handle_input(input).is_err() {
            self.closed = true;
        }
        self.drain();
    }

    /// Polls str0m until it wants time to pass: sends what it transmits, handles its events.
    fn drain(&mut self) {
        loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    self.closed = true;
                    // Do not spin on a broken Rtc: wait a while before polling it again.
                    self.next_timeout = Instant::now() + Duration::from_millis(50);
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(event) => match event {
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.closed = true
                    }
                    Event::RtpPacket(p) => {
                        self.stats.rtp_received += 1;
                        if Some(p.header.payload_type) == self.pt {
                            self.decode(&p.payload);
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    fn decode(&mut self, payload: &[u8]) {
        match self.dec.decode(payload, &mut self.pcm) {
            Ok(n) => {
                let frame = &self.pcm[..n];
                let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
                if n > 0 && (energy / n as f64).sqrt() > NON_SILENT_RMS {
                    self.stats.non_silent_packets += 1;
                    self.stats.non_silent_energy += energy;
                }
                self.received_pcm.extend_from_slice(frame);
            }
            Err(_) => self.stats.decode_errors += 1,
        }
    }

    /// Opus-encodes one 20 ms frame (960 samples at 48 kHz or 320 at 16 kHz) and sends it.
    /// Needs the connection up.
    pub fn send_audio_20ms(&mut self, pcm: &[i16]) {
        let encoder = match pcm.len() {
            960 => &mut self.enc48,
            320 => &mut self.enc16,
            n => panic!("a 20 ms frame is 960 (48 kHz) or 320 (16 kHz) samples, not {n}"),
        };
        let len = encoder.encode(pcm, &mut self.payload).expect("opus encode");
        let pt = self.pt.expect("accept_answer() first");
        let mid = self.mid;
        let ssrc = match self.tx_ssrc {
            Some(s) => s,
            None => {
                let mut api = self.rtc.direct_api();
                let s = api
                    .stream_tx_by_mid(mid, None)
                    .expect("our send stream")
                    .ssrc();
                self.tx_ssrc = Some(s);
                s
            }
        };
        let now = Instant::now();
        let write = RtpWrite::new(
            pt,
            SeqNo::from(self.seq),
            self.rtp_ts,
            now,
            self.payload[..len].to_vec(),
        )
        .marker(self.stats.rtp_sent == 0);
        let mut api = self.rtc.direct_api();
        api.stream_tx(&ssrc).expect("stream_tx").write_rtp(write);
        self.seq += 1;
        self.rtp_ts = self.rtp_ts.wrapping_add(960);
        self.stats.rtp_sent += 1;
        self.drain();
    }
}

impl Default for WebRtcClient {
    fn default() -> Self {
        WebRtcClient::new()
    }
}

/// Pumps several clients in turn, a millisecond each, until `deadline`.
pub fn pump_all(clients: &mut [&mut WebRtcClient], deadline: Instant) {
    loop {
        for c in clients.iter_mut() {
            let slice = (Instant::now() + Duration::from_millis(1)).min(deadline);
            c.pump(slice);
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// Connects several clients at once; true when all are connected within `limit`.
pub fn connect_all(clients: &mut [&mut WebRtcClient], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !clients.iter().all(|c| c.is_connected()) && Instant::now() < deadline {
        pump_all(
            clients,
            (Instant::now() + Duration::from_millis(5)).min(deadline),
        );
    }
    clients.iter().all(|c| c.is_connected())
}

/// A sine generator with continuous phase across frames.
#[derive(Debug, Clone, Copy)]
pub struct Tone {
    pub freq: f64,
    pub rate: u32,
    pub amplitude: f64,
    phase: f64,
}

impl Tone {
    pub fn new(freq: f64, rate: u32, amplitude: f64) -> Tone {
        Tone {
            freq,
            rate,
            amplitude,
            phase: 0.0,
        }
    }

    /// The next `n` samples.
    pub fn next(&mut self, n: usize) -> Vec<i16> {
        let step = std::f64::consts::TAU * self.freq / f64::from(self.rate);
        (0..n)
            .map(|_| {
                let s = (self.amplitude * self.phase.sin()) as i16;
                self.phase = (self.phase + step) % std::f64::consts::TAU;
                s
            })
            .collect()
    }

    /// The next 20 ms frame.
    pub fn frame(&mut self) -> Vec<i16> {
        self.next(self.rate as usize / 50)
    }
}

/// Power of `freq` in `pcm` (Goertzel), normalised by length: a full-scale sine at `freq`
/// gives about (A/2)².
pub fn tone_power(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = pcm.len() as f64;
    power / (n * n)
}

/// RMS of `pcm`.
pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt()
}

/// 20 ms frames of `pcm` (at `rate`) louder than [`NON_SILENT_RMS`].
pub fn loud_frames(pcm: &[i16], rate: u32) -> usize {
    pcm.chunks_exact(rate as usize / 50)
        .filter(|f| rms(f) > NON_SILENT_RMS)
        .count()
}

/// Xorshift64*: reproducible junk without a random-number crate.
#[derive(Debug, Clone, Copy)]
pub struct Junk(u64);

impl Junk {
    pub fn new(seed: u64) -> Junk {
        Junk(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A well-formed STUN Binding request (USERNAME `username`, PRIORITY, MESSAGE-INTEGRITY of
/// random bytes): what str0m's parser accepts and only the integrity check would refuse.
pub fn fake_stun_binding_request(junk: &mut Junk, username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut attr = |typ: u16, value: &[u8]| {
        attrs.extend_from_slice(&typ.to_be_bytes());
        attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attrs.extend_from_slice(value);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    attr(0x0006, username.as_bytes());
    attr(0x0024, &0x6e7f_1eff_u32.to_be_bytes());
    let mut integrity = [0u8; 20];
    junk.fill(&mut integrity);
    attr(0x0008, &integrity);
    let mut msg = Vec::with_capacity(20 + attrs.len());
    msg.extend_from_slice(&0x0001_u16.to_be_bytes());
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442_u32.to_be_bytes());
    let mut trans_id = [0u8; 12];
    junk.fill(&mut trans_id);
    msg.extend_from_slice(&trans_id);
    msg.extend_from_slice(&attrs);
    msg
}

/// A DTLS 1.2 handshake record (content type 22) with a random body, as a stray or spoofed
/// ClientHello would look on the wire.
pub fn fake_dtls_record(junk: &mut Junk) -> Vec<u8> {
    let body_len = 60 + junk.below(120) as usize;
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0];
    let mut seq = [0u8; 6];
    junk.fill(&mut seq);
    rec.extend_from_slice(&seq);
    rec.extend_from_slice(&(body_len as u16).to_be_bytes());
    let mut body = vec![0u8; body_len];
    junk.fill(&mut body);
    body[0] = 1; // ClientHello
    rec.extend_from_slice(&body);
    rec
}
