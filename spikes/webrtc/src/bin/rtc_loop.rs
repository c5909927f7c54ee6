//! webrtc-rs `rtc` (sans-I/O) loopback spike: one browser-like client (full ICE, offerer)
//! against one ICE-lite server peer connection. In-memory network, simulated clock, Opus
//! 48 kHz, 80-byte payloads every 20 ms both ways, default interceptors (RTCP SR/RR, NACK,
//! TWCC receiver). Measures thread CPU time and heap allocations per packet.
//!
//!   cargo run --release --bin rtc_loop --features rtc-ring -- [N packets]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use webrtc_spike::{alloc_count, thread_cpu};

#[global_allocator]
static A: webrtc_spike::Counting = webrtc_spike::Counting;

struct Pkt {
    src: SocketAddr,
    dst: SocketAddr,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Net {
    q: VecDeque<Pkt>,
    pool: Vec<Vec<u8>>,
    sent: u64,
}

struct Peer {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    connected: bool,
    rx: u64,
    rx_bytes: u64,
    rtcp: u64,
    sender: Option<rtc::rtp_transceiver::RTCRtpSenderId>,
    ssrc: u32,
    pt: u8,
    seq: u16,
}

impl Peer {
    fn drain(&mut self, net: &mut Net) {
        while let Some(m) = self.pc.poll_write() {
            let mut buf = net.pool.pop().unwrap_or_else(|| Vec::with_capacity(1500));
            buf.clear();
            buf.extend_from_slice(&m.message);
            net.q.push_back(Pkt { src: m.transport.local_addr, dst: m.transport.peer_addr, buf });
            net.sent += 1;
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                if s == RTCPeerConnectionState::Connected {
                    self.connected = true;
                }
                assert!(s != RTCPeerConnectionState::Failed, "failed");
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_track, p) => {
                    self.rx += 1;
                    self.rx_bytes += p.payload.len() as u64;
                }
                RTCMessage::RtcpPacket(_, pkts) => self.rtcp += pkts.len() as u64,
                _ => {}
            }
        }
    }

    fn send(&mut self, now: Instant, i: u32, payload: &[u8], net: &mut Net) {
        self.seq = self.seq.wrapping_add(1);
        let packet = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: self.pt,
                sequence_number: self.seq,
                timestamp: i * 960,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        let mut s = self.pc.rtp_sender(self.sender.expect("sender")).expect("sender");
        s.write_rtp(now, packet).expect("write_rtp");
        self.drain(net);
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
        ..Default::default()
    }
}

fn build(lite: bool, addr: SocketAddr, now: Instant) -> RTCPeerConnection {
    let mut me = MediaEngine::default();
    me.register_codec(opus(), RtpCodecKind::Audio).unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut me).unwrap();
    let se = SettingEngineBuilder::new()
        .with_lite(lite)
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)
        .unwrap();
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json().unwrap()).unwrap();
    pc
}

fn track(ssrc: u32, name: &str) -> MediaStreamTrack {
    MediaStreamTrack::new(
        name.to_string(),
        format!("{name}-audio"),
        format!("{name}-audio"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: opus().rtp_codec,
            ..Default::default()
        }],
    )
}

fn deliver(p: &mut Peer, pkt: &Pkt, now: Instant) {
    p.pc.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: pkt.dst,
            peer_addr: pkt.src,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(&pkt.buf[..]),
    })
    .expect("handle_read");
}

fn pump(c: &mut Peer, s: &mut Peer, net: &mut Net, now: Instant) {
    loop {
        while let Some(p) = net.q.pop_front() {
            let to = if p.dst == s.addr { &mut *s } else { &mut *c };
            deliver(to, &p, now);
            to.drain(net);
            net.pool.push(p.buf);
        }
        for p in [&mut *c, &mut *s] {
            if p.pc.poll_timeout().is_some_and(|t| t <= now) {
                p.pc.handle_timeout(now).expect("timeout");
                p.drain(net);
            }
        }
        if net.q.is_empty() {
            break;
        }
    }
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let t0 = Instant::now();
    let mut now = t0;
    let saddr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 3478).into();
    let caddr: SocketAddr = (Ipv4Addr::new(10, 0, 1, 1), 5000).into();
    let mut net = Net::default();

    let (cpu_s0, al_s0) = (thread_cpu(), alloc_count());
    let mut cpc = build(false, caddr, now);
    let csender = cpc.add_track(track(1111, "client")).unwrap();
    let offer = cpc.create_offer(None).unwrap();
    cpc.set_local_description(now, offer.clone()).unwrap();

    let mut spc = build(true, saddr, now);
    spc.set_remote_description(now, offer).unwrap();
    let ssender = spc.add_track(track(2222, "server")).unwrap();
    let answer = spc.create_answer(None).unwrap();
    spc.set_local_description(now, answer.clone()).unwrap();
    println!("--- answer SDP (server, ice-lite) ---\n{}---", answer.sdp);
    cpc.set_remote_description(now, answer).unwrap();

    let mk = |pc, addr, sender, ssrc| Peer {
        pc, addr, connected: false, rx: 0, rx_bytes: 0, rtcp: 0, sender: Some(sender), ssrc, pt: 111, seq: 0,
    };
    let mut c = mk(cpc, caddr, csender, 1111);
    let mut s = mk(spc, saddr, ssender, 2222);
    c.drain(&mut net);
    s.drain(&mut net);
    let mut steps = 0;
    while !(c.connected && s.connected) {
        now += Duration::from_millis(1);
        pump(&mut c, &mut s, &mut net, now);
        steps += 1;
        assert!(steps < 20_000, "did not connect");
    }
    let (cpu_s, al_s) = (thread_cpu() - cpu_s0, alloc_count() - al_s0);
    println!(
        "connected after {steps} simulated ms; setup (both ends): {:.2} ms CPU, {al_s} allocs",
        cpu_s.as_secs_f64() * 1e3
    );

    let payload = [0x5au8; 80];
    let sent0 = net.sent;
    let (cpu0, al0) = (thread_cpu(), alloc_count());
    let start = now;
    for i in 0..n {
        now = start + Duration::from_millis(20 * i as u64);
        c.send(now, i, &payload, &mut net);
        s.send(now, i, &payload, &mut net);
        pump(&mut c, &mut s, &mut net, now);
    }
    let (cpu, allocs) = (thread_cpu() - cpu0, alloc_count() - al0);
    let pkts = 2 * n as u64;
    println!("N={n}: {pkts} media packets ({} datagrams incl. RTCP)", net.sent - sent0);
    println!(
        "  CPU per packet (encrypt+send+decrypt+receive): {:.2} µs; allocs per packet: {:.2}",
        cpu.as_secs_f64() * 1e6 / pkts as f64,
        allocs as f64 / pkts as f64
    );
    println!("  server: rx {} pkts {} bytes, rtcp {}", s.rx, s.rx_bytes, s.rtcp);
    println!("  client: rx {} pkts {} bytes, rtcp {}", c.rx, c.rx_bytes, c.rtcp);
}

#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<RTCPeerConnection>();
}
