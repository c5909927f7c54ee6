//! Browser calls' transport: ICE-lite, DTLS-SRTP and RTCP through str0m (sans-I/O), every
//! browser call on one UDP port that a media worker owns.
//!
//! [`WebRtcAnswerer`] turns a browser's SDP offer into a [`WebRtcPeer`] and the SDP answer
//! (no I/O: the HTTP side calls it). The peer then moves into the worker that owns the shared
//! port ([`WebRtcPort`]), which demultiplexes datagrams to peers: by the sender's address once
//! a peer accepted it, else by the STUN USERNAME's first half (our ICE ufrag, RFC 8445 §7.2.2).
//! RTP mode: str0m hands over the caller's decrypted RTP, which the call's `MediaSession`
//! receives as it would from an RTP port (jitter buffer, Opus decoder with FEC, resampling to
//! 16 kHz, VAD); what the session sends, str0m encrypts. RTCP is str0m's; the receiver
//! reports the browser sends about our stream feed the session's quality stats.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::ice::StunMessage;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::rtcp::ReportBlock;
use crate::session::{MediaEvent, MediaSession};

/// How long a browser has to complete ICE and DTLS before its call is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The SDP does not parse (HTTP 400).
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// No audio, or no Opus in it (HTTP 406).
    #[error("{0}")]
    NotAcceptable(&'static str),
}

/// Makes answers for browsers' offers: one DTLS certificate for every call (its fingerprint
/// goes in each answer; generating one per call would cost milliseconds each), and the host
/// candidate browsers reach the shared port at.
pub struct WebRtcAnswerer {
    cert: DtlsCert,
    candidate: SocketAddr,
    connect_timeout: Duration,
}

impl WebRtcAnswerer {
    /// `candidate`: the address and port browsers send to (the public IP, the shared port).
    pub fn new(candidate: SocketAddr) -> Result<WebRtcAnswerer, OfferError> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or(OfferError::NotAcceptable("cannot make a DTLS certificate"))?;
        Ok(WebRtcAnswerer {
            cert,
            candidate,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// How long peers have to connect ([`CONNECT_TIMEOUT`] unless set).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> WebRtcAnswerer {
        self.connect_timeout = timeout;
        self
    }

    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    /// The peer for `offer` and our SDP answer. The payload type the browser chose for Opus
    /// is the peer's [`WebRtcPeer::payload_type`].
    pub fn answer(&self, offer: &str, now: Instant) -> Result<(WebRtcPeer, String), OfferError> {
        // Unparseable is 400 whatever it holds; parseable but useless (no audio, no Opus) 406.
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let opus_pt = check_offer(offer)?;
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Audio only, at a fixed rate: no bandwidth estimation, so no transport-wide
            // sequence numbers and none of their feedback (a third more datagrams, each
            // SRTCP-protected); only the MID that BUNDLE needs.
            .clear_extension_map()
            .set_extension(4, Extension::RtpMid)
            .build(now);
        let candidate = Candidate::host(self.candidate, "udp")
            .map_err(|e| OfferError::Malformed(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| OfferError::Malformed(e.to_string()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut peer = WebRtcPeer {
            rtc,
            ufrag,
            local: self.candidate,
            remote: None,
            addrs: Vec::new(),
            opus_pt,
            mid: None,
            tx: None,
            seq: None,
            connected: false,
            started: now,
            connect_timeout: self.connect_timeout,
            closed: false,
            next_timeout: now,
            rtp: Vec::with_capacity(1500),
        };
        // The answer's side effects (MediaAdded) are read now, so the peer starts drained.
        peer.drain(now, None, &mut |_| {}, &mut |_, _| {});
        Ok((peer, answer.to_sdp_string()))
    }
}

/// Refuses what str0m would accept but a call cannot use: no audio, no Opus. Returns the
/// first Opus payload type of the first audio section.
fn check_offer(offer: &str) -> Result<u8, OfferError> {
    let lines = offer.lines().map(str::trim);
    if !offer.trim_start().starts_with("v=") {
        return Err(OfferError::Malformed("it does not start with v=".into()));
    }
    let mut in_audio = false;
    let mut saw_audio = false;
    for line in lines {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            saw_audio |= in_audio && !m.starts_with("audio 0 ");
            continue;
        }
        if !in_audio {
            continue;
        }
        if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
            if codec.to_ascii_lowercase().starts_with("opus/48000") {
                if let Ok(pt) = pt.parse::<u8>() {
                    return Ok(pt);
                }
            }
        }
    }
    Err(OfferError::NotAcceptable(if saw_audio {
        "the offer's audio has no Opus (opus/48000/2); browsers offer it unless told not to"
    } else {
        "the offer has no audio section (m=audio)"
    }))
}

/// One browser call's transport, owned by the worker that owns the shared port.
pub struct WebRtcPeer {
    rtc: Rtc,
    /// Our ICE ufrag: the first half of the USERNAME in the browser's STUN checks.
    ufrag: String,
    /// The shared port's address (what str0m knows as the destination of what arrives).
    local: SocketAddr,
    /// Where the browser's media comes from, once ICE found it.
    remote: Option<SocketAddr>,
    /// Every address the demultiplexer learned for this peer (forgotten when it goes).
    addrs: Vec<SocketAddr>,
    opus_pt: u8,
    mid: Option<Mid>,
    /// Our sending stream and the payload type it writes.
    tx: Option<(Ssrc, Pt)>,
    /// The extended sequence number of the last packet sent (SRTP's rollover counter).
    seq: Option<u64>,
    connected: bool,
    started: Instant,
    connect_timeout: Duration,
    /// ICE failed or closed, DTLS closed, or never connected in time: reported once.
    closed: bool,
    next_timeout: Instant,
    /// A received packet rebuilt as RTP for the session.
    rtp: Vec<u8>,
}

impl WebRtcPeer {
    /// The payload type of Opus in the browser's offer (the session's).
    pub fn payload_type(&self) -> u8 {
        self.opus_pt
    }

    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A datagram routed to this peer: false when str0m does not take it as this peer's
    /// (its own check: the nominated address, a viable candidate, or a STUN message for our
    /// credentials); otherwise what it yields goes to `session` and out through `send`.
    /// The datagram is classified once, for both.
    fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        session: &mut MediaSession,
        emit: &mut dyn FnMut(MediaEvent),
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> bool {
        let Some(r) = receive(self.local, from, datagram) else {
            return false;
        };
        let input = Input::Receive(now, r);
        if !self.rtc.accepts(&input) {
            return false;
        }
        if self.rtc.handle_input(input).is_ok() {
            self.drain(now, Some(session), emit, send);
        }
        true
    }

    /// Timers, the connect deadline, then what the session has to send this tick.
    fn tick(
        &mut self,
        now: Instant,
        session: &mut MediaSession,
        tx_buf: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> bool {
        if now >= self.next_timeout && self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain(now, Some(session), emit, send);
        }
        if !self.connected
            && !self.closed
            && now.duration_since(self.started) >= self.connect_timeout
        {
            self.closed = true;
            emit(MediaEvent::TransportClosed("webrtc_connect_timeout"));
        }
        // Until ICE and DTLS are up the session waits: what the agent queued (its greeting)
        // stays in the playout ring instead of being played to nobody.
        if !self.connected {
            return false;
        }
        let Some(out) = session.tick(now, tx_buf, emit) else {
            return false;
        };
        self.send_packet(now, session, &tx_buf[..out.len], emit, send)
    }

    /// A held stream's reply starts now, between ticks, when its audio is queued (the
    /// worker's wake): as RTP calls do, so a reply does not wait up to a tick.
    fn talkspurt(
        &mut self,
        now: Instant,
        session: &mut MediaSession,
        tx_buf: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> bool {
        if !self.connected || self.closed {
            return false;
        }
        let Some(out) = session.poll_talkspurt(now, tx_buf, emit) else {
            return false;
        };
        self.send_packet(now, session, &tx_buf[..out.len], emit, send)
    }

    /// One RTP packet the session made, written through str0m (SRTP) and sent.
    fn send_packet(
        &mut self,
        now: Instant,
        session: &mut MediaSession,
        rtp: &[u8],
        emit: &mut dyn FnMut(MediaEvent),
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> bool {
        if self.closed {
            return false;
        }
        let Ok(packet) = crate::rtp::parse(rtp) else {
            return false;
        };
        let Some((ssrc, pt)) = self.sending_stream() else {
            return false;
        };
        let h = &packet.header;
        let seq = extend_seq(self.seq, h.sequence);
        self.seq = Some(seq);
        let write =
            RtpWrite::new(pt, SeqNo::from(seq), h.timestamp, now, packet.payload).marker(h.marker);
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&ssrc) else {
            return false;
        };
        stream.write_rtp(write);
        self.drain(now, Some(session), emit, send);
        true
    }

    /// The stream we send on and Opus's payload type in it, once the m-line is known.
    fn sending_stream(&mut self) -> Option<(Ssrc, Pt)> {
        if self.tx.is_none() {
            let mid = self.mid?;
            let pt = Pt::from(self.opus_pt);
            let ssrc = self.rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
            self.tx = Some((ssrc, pt));
        }
        self.tx
    }

    /// Polls str0m until it wants time to pass (its single-mutation invariant).
    fn drain(
        &mut self,
        now: Instant,
        mut session: Option<&mut MediaSession>,
        emit: &mut dyn FnMut(MediaEvent),
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) {
        loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    self.close(emit, "webrtc_error");
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => send(t.destination, &t.contents),
                Output::Event(event) => match event {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio && self.mid.is_none() => {
                        self.mid = Some(m.mid)
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.close(emit, "webrtc_disconnected")
                    }
                    Event::RtpPacket(p) => {
                        if let Some(session) = session.as_deref_mut() {
                            let from = self.remote.unwrap_or(self.local);
                            rebuild_rtp(&mut self.rtp, &p.header, &p.payload);
                            session.handle_packet(now, from, &self.rtp, emit);
                        }
                    }
                    Event::MediaEgressStats(s) => {
                        if let Some(session) = session.as_deref_mut() {
                            let block = ReportBlock {
                                fraction_lost: s
                                    .loss
                                    .map_or(0, |l| (l.clamp(0.0, 1.0) * 256.0).min(255.0) as u8),
                                jitter: s.remote.as_ref().map_or(0, |r| r.jitter),
                                cumulative_lost: s
                                    .remote
                                    .as_ref()
                                    .map_or(0, |r| r.packets_lost.min(i32::MAX as u64) as i32),
                                ..ReportBlock::default()
                            };
                            if s.loss.is_some() || s.rtt.is_some() {
                                session.peer_report(block, s.rtt);
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    fn close(&mut self, emit: &mut dyn FnMut(MediaEvent), why: &'static str) {
        if !self.closed {
            self.closed = true;
            emit(MediaEvent::TransportClosed(why));
        }
    }

    /// Says goodbye (RTCP BYE, DTLS close_notify) as the call ends.
    fn shut_down(&mut self, now: Instant, send: &mut dyn FnMut(SocketAddr, &[u8])) {
        if self.rtc.close().is_ok() {
            self.drain(now, None, &mut |_| {}, send);
        }
        self.rtc.disconnect();
    }
}

/// `from`'s datagram as str0m takes it; None for what is no WebRTC protocol at all.
fn receive(local: SocketAddr, from: SocketAddr, datagram: &[u8]) -> Option<Receive<'_>> {
    Some(Receive {
        proto: Protocol::Udp,
        source: from,
        destination: local,
        contents: datagram.try_into().ok()?,
    })
}

/// The 64-bit sequence number of `seq` following `last` (the session's 16-bit counter wraps
/// every 21 minutes of audio; SRTP needs the rollovers counted).
fn extend_seq(last: Option<u64>, seq: u16) -> u64 {
    match last {
        None => u64::from(seq),
        Some(last) => {
            let delta = seq.wrapping_sub(last as u16) as i16;
            last.wrapping_add_signed(i64::from(delta))
        }
    }
}

/// A 12-byte RTP header and the payload: what the session parses (extensions dropped: the
/// session reads none of them).
fn rebuild_rtp(out: &mut Vec<u8>, h: &str0m::rtp::RtpHeader, payload: &[u8]) {
    out.clear();
    out.push(0x80);
    out.push((u8::from(h.marker) << 7) | (*h.payload_type & 0x7f));
    out.extend_from_slice(&h.sequence_number.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&(*h.ssrc).to_be_bytes());
    out.extend_from_slice(payload);
}

/// What the shared port's demultiplexer counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub datagrams: u64,
    /// Datagrams that matched no call (junk, scanners, stale peers, foreign DTLS).
    pub unmatched: u64,
}

/// The one UDP port of every browser call, and which call each datagram is for.
pub struct WebRtcPort {
    socket: UdpSocket,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    pub stats: PortStats,
}

impl WebRtcPort {
    pub fn new(socket: UdpSocket) -> std::io::Result<WebRtcPort> {
        socket.set_nonblocking(true)?;
        Ok(WebRtcPort {
            socket,
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            stats: PortStats::default(),
        })
    }

    /// A call's peer is on this port from now on.
    pub fn register(&mut self, id: u64, peer: &WebRtcPeer) {
        self.by_ufrag.insert(peer.ufrag.clone(), id);
    }

    /// Forgets a call's peer, sending its goodbye.
    pub fn unregister(&mut self, now: Instant, peer: &mut WebRtcPeer) {
        self.by_ufrag.remove(&peer.ufrag);
        for a in peer.addrs.drain(..) {
            self.by_addr.remove(&a);
        }
        let socket = &self.socket;
        peer.shut_down(now, &mut |to, data| {
            let _ = socket.send_to(data, to);
        });
    }

    /// Reads up to `budget` datagrams; each one that belongs to a call is handed to
    /// `deliver(id, from, datagram)`, which finds the call and calls [`WebRtcPort::feed`].
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        mut deliver: impl FnMut(&mut WebRtcPort, u64, SocketAddr, &[u8]),
    ) {
        for _ in 0..budget {
            let Ok((n, from)) = self.socket.recv_from(buf) else {
                break;
            };
            self.stats.datagrams += 1;
            match self.route(from, &buf[..n]) {
                Some(id) => deliver(self, id, from, &buf[..n]),
                None => self.stats.unmatched += 1,
            }
        }
    }

    /// Which call a datagram is for: its sender's address, else (STUN) our ufrag.
    fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<u64> {
        if let Some(&id) = self.by_addr.get(&from) {
            return Some(id);
        }
        // RFC 7983: a first byte of 0-3 is STUN.
        if datagram.first().is_some_and(|b| *b < 4) {
            let message = StunMessage::parse(datagram).ok()?;
            let (ours, _theirs) = message.split_username()?;
            return self.by_ufrag.get(ours).copied();
        }
        None
    }

    /// Hands `call`'s datagram to its peer when the peer accepts it, learning the address.
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        now: Instant,
        id: u64,
        peer: &mut WebRtcPeer,
        session: &mut MediaSession,
        from: SocketAddr,
        datagram: &[u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) {
        let socket = &self.socket;
        let accepted = peer.handle_datagram(now, from, datagram, session, emit, &mut |to, data| {
            let _ = socket.send_to(data, to);
        });
        if !accepted {
            self.stats.unmatched += 1;
            return;
        }
        if self.by_addr.len() < MAX_ADDRESSES && !self.by_addr.contains_key(&from) {
            self.by_addr.insert(from, id);
            peer.addrs.push(from);
        }
        if peer.remote.is_none() && datagram.first().is_none_or(|b| *b >= 4) {
            peer.remote = Some(from);
        }
    }

    /// A call's tick: timers, then what it sends. True when a media packet went out.
    pub fn tick(
        &mut self,
        now: Instant,
        peer: &mut WebRtcPeer,
        session: &mut MediaSession,
        tx_buf: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) -> bool {
        let socket = &self.socket;
        peer.tick(now, session, tx_buf, emit, &mut |to, data| {
            let _ = socket.send_to(data, to);
        })
    }

    /// A held call's reply starts now (see [`WebRtcPeer`]'s talkspurt). True when a packet
    /// went out.
    pub fn talkspurt(
        &mut self,
        now: Instant,
        peer: &mut WebRtcPeer,
        session: &mut MediaSession,
        tx_buf: &mut [u8],
        emit: &mut dyn FnMut(MediaEvent),
    ) -> bool {
        let socket = &self.socket;
        peer.talkspurt(now, session, tx_buf, emit, &mut |to, data| {
            let _ = socket.send_to(data, to);
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Addresses the demultiplexer remembers across all calls (a browser tries a few candidate
/// pairs; a flood of accepted-looking STUN cannot grow the map without bound).
const MAX_ADDRESSES: usize = 65_536;

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER_NO_OPUS: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n";
    const OFFER_VIDEO: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn offers_without_opus_or_audio_are_not_acceptable() {
        assert_eq!(
            check_offer(OFFER_VIDEO),
            Err(OfferError::NotAcceptable(
                "the offer has no audio section (m=audio)"
            ))
        );
        assert!(matches!(
            check_offer(OFFER_NO_OPUS),
            Err(OfferError::NotAcceptable(m)) if m.contains("no Opus")
        ));
        assert!(matches!(
            check_offer("hello"),
            Err(OfferError::Malformed(_))
        ));
        let with_opus =
            OFFER_NO_OPUS.replace(" 0\r\n", " 111 0\r\n") + "a=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(check_offer(&with_opus), Ok(111));
    }

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        assert_eq!(extend_seq(None, 65_535), 65_535);
        assert_eq!(extend_seq(Some(65_535), 0), 65_536);
        assert_eq!(extend_seq(Some(65_536), 65_535), 65_535);
        assert_eq!(extend_seq(Some(70_000), 4_465), 70_001);
    }
}
