//! str0m loopback spike: K browser-like clients (full ICE, offerer) against K ICE-lite
//! server `Rtc`s that all share ONE server address (as Parley's worker would on one UDP
//! port). In-memory network, simulated clock (no sleeping), Opus 48 kHz, 80-byte payloads
//! every 20 ms both ways. Measures thread CPU time and heap allocations per packet.
//!
//!   cargo run --release --bin str0m_loop --features str0m-aws-lc -- [N packets] [K calls] [rtp]
//!
//! `rtp` as third argument switches both sides to str0m's RTP mode (raw RTP in/out, Parley
//! keeps its own jitter buffer), otherwise frame mode (`Writer::write` / `Event::MediaData`).

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::ice::StunMessage;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use webrtc_spike::{alloc_count, thread_cpu};

#[global_allocator]
static A: webrtc_spike::Counting = webrtc_spike::Counting;

struct Pkt {
    src: SocketAddr,
    dst: SocketAddr,
    buf: Vec<u8>,
}

/// In-memory network with a buffer pool so the harness itself does not allocate per packet.
#[derive(Default)]
struct Net {
    q: VecDeque<Pkt>,
    pool: Vec<Vec<u8>>,
    sent: u64,
}

impl Net {
    fn push(&mut self, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        let mut buf = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1500));
        buf.clear();
        buf.extend_from_slice(data);
        self.q.push_back(Pkt { src, dst, buf });
        self.sent += 1;
    }
}

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    timeout: Instant,
    mid: Option<Mid>,
    pt: Option<Pt>,
    connected: bool,
    rx_frames: u64,
    rx_bytes: u64,
    ingress_stats: u64,
    last_loss: Option<f32>,
    last_rtt: Option<Duration>,
    tx_ssrc: Option<Ssrc>,
    seq: u64,
}

impl Peer {
    fn new(rtc: Rtc, addr: SocketAddr, now: Instant) -> Self {
        Peer {
            rtc,
            addr,
            timeout: now,
            mid: None,
            pt: None,
            connected: false,
            rx_frames: 0,
            rx_bytes: 0,
            ingress_stats: 0,
            last_loss: None,
            last_rtt: None,
            tx_ssrc: None,
            seq: 0,
        }
    }

    /// The single-mutation invariant: after every mutation drain to Output::Timeout.
    fn drain(&mut self, net: &mut Net) {
        loop {
            match self.rtc.poll_output().expect("poll_output") {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => net.push(t.source, t.destination, &t.contents),
                Output::Event(e) => match e {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) => self.mid = Some(m.mid),
                    Event::MediaData(d) => {
                        self.rx_frames += 1;
                        self.rx_bytes += d.data.len() as u64;
                    }
                    Event::RtpPacket(p) => {
                        self.rx_frames += 1;
                        self.rx_bytes += p.payload.len() as u64;
                    }
                    Event::MediaIngressStats(s) => {
                        self.ingress_stats += 1;
                        self.last_loss = s.loss;
                        self.last_rtt = s.rtt;
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        panic!("ice disconnected")
                    }
                    _ => {}
                },
            }
        }
    }

    fn input(&mut self, input: Input, net: &mut Net) {
        self.rtc.handle_input(input).expect("handle_input");
        self.drain(net);
    }

    fn resolve_pt(&mut self) {
        if self.pt.is_none() {
            if let Some(mid) = self.mid {
                // Negotiated PTs of the m-line, matched against our codec config (works in
                // both frame and RTP mode; `writer()` panics in RTP mode).
                let pts = self.rtc.media(mid).expect("media").remote_pts().to_vec();
                self.pt = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.spec().codec == Codec::Opus && pts.contains(&p.pt()))
                    .map(|p| p.pt());
            }
        }
    }

    fn send_frame(&mut self, now: Instant, i: u64, payload: &[u8], rtp_mode: bool, net: &mut Net) {
        let mid = self.mid.expect("mid");
        let pt = self.pt.expect("pt");
        if rtp_mode {
            // RTP mode: we pick seq/timestamp ourselves (Parley already does for SIP legs).
            let ssrc = *self.tx_ssrc.get_or_insert_with(|| {
                self.rtc.media(mid).expect("media");
                // the first tx stream of this mid
                let mut api = self.rtc.direct_api();
                api.stream_tx_by_mid(mid, None).expect("tx stream").ssrc()
            });
            let mut api = self.rtc.direct_api();
            let tx = api.stream_tx(&ssrc).expect("stream_tx");
            self.seq += 1;
            tx.write_rtp(RtpWrite::new(pt, self.seq.into(), (i * 960) as u32, now, payload));
        } else {
            let w = self.rtc.writer(mid).expect("writer");
            w.write(pt, now, MediaTime::new(i * 960, Frequency::FORTY_EIGHT_KHZ), payload)
                .expect("write");
        }
        self.drain(net);
    }
}

/// Demux for the shared server port: address fast path, then STUN USERNAME
/// ("serverUfrag:clientUfrag") for a peer's first packets.
struct Demux {
    by_addr: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
}

impl Demux {
    fn route(&mut self, p: &Pkt) -> Option<usize> {
        if let Some(&i) = self.by_addr.get(&p.src) {
            return Some(i);
        }
        // RFC 7983: first byte 0..=3 is STUN.
        if p.buf.first().is_some_and(|b| *b < 4) {
            let msg = StunMessage::parse(&p.buf).ok()?;
            let (local, _remote) = msg.split_username()?;
            let i = *self.by_ufrag.get(local)?;
            // Learn the address only once the Rtc accepted it (integrity checked by str0m).
            return Some(i);
        }
        None
    }
}

fn build(ice_lite: bool, rtp_mode: bool, now: Instant) -> Rtc {
    RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .set_ice_lite(ice_lite)
        .set_rtp_mode(rtp_mode)
        .set_stats_interval(Some(Duration::from_secs(1)))
        .build(now)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let k: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rtp_mode = args.get(3).is_some_and(|s| s == "rtp");

    let t0 = Instant::now();
    let mut now = t0;
    let server_addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 3478).into();
    let mut net = Net::default();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    let mut demux = Demux { by_addr: HashMap::new(), by_ufrag: HashMap::new() };

    // ---- setup: SDP offer/answer through strings, as over HTTP signalling ----
    let (cpu_setup0, al_setup0) = (thread_cpu(), alloc_count());
    for c in 0..k {
        let caddr: SocketAddr = (Ipv4Addr::new(10, 0, 1 + (c / 250) as u8, 1 + (c % 250) as u8), 5000).into();
        let mut client = build(false, rtp_mode, now);
        client.add_local_candidate(Candidate::host(caddr, "udp").unwrap());
        let mut change = client.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let offer_s = offer.to_sdp_string();

        let mut server = build(true, rtp_mode, now);
        server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
        let answer = server
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer_s).unwrap())
            .unwrap();
        let answer_s = answer.to_sdp_string();
        if c == 0 {
            println!("--- answer SDP (server, ice-lite) ---\n{answer_s}---");
        }
        client
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer_s).unwrap())
            .unwrap();
        let ufrag = server.direct_api().local_ice_credentials().ufrag;
        demux.by_ufrag.insert(ufrag, c);

        let mut cp = Peer::new(client, caddr, now);
        cp.mid = Some(mid);
        let mut sp = Peer::new(server, server_addr, now);
        cp.drain(&mut net);
        sp.drain(&mut net);
        clients.push(cp);
        servers.push(sp);
    }

    // ---- connect: ICE (lite on server) + DTLS + SRTP keying ----
    let mut steps = 0;
    while !(servers.iter().all(|p| p.connected && p.mid.is_some())
        && clients.iter().all(|p| p.connected))
    {
        now += Duration::from_millis(1);
        pump(&mut net, &mut servers, &mut clients, &mut demux, server_addr, now);
        steps += 1;
        assert!(steps < 20_000, "did not connect");
    }
    let (cpu_setup, al_setup) = (thread_cpu() - cpu_setup0, alloc_count() - al_setup0);
    println!(
        "connected {k} call(s) after {steps} simulated ms; setup cost per call: {:.2} ms CPU, {} allocs",
        cpu_setup.as_secs_f64() * 1e3 / k as f64,
        al_setup / k as u64
    );
    for p in servers.iter_mut().chain(clients.iter_mut()) {
        p.resolve_pt();
    }

    // ---- steady state: 20 ms Opus-sized frames both ways ----
    let payload = [0x5au8; 80];
    let net_sent0 = net.sent;
    let (cpu0, al0) = (thread_cpu(), alloc_count());
    let start = now;
    for i in 0..n {
        now = start + Duration::from_millis(20 * i);
        for p in clients.iter_mut().chain(servers.iter_mut()) {
            p.send_frame(now, i, &payload, rtp_mode, &mut net);
        }
        pump(&mut net, &mut servers, &mut clients, &mut demux, server_addr, now);
    }
    let (cpu, allocs) = (thread_cpu() - cpu0, alloc_count() - al0);
    let media_pkts = 2 * n * k as u64; // each sent once and received once
    let datagrams = net.sent - net_sent0;
    println!(
        "mode={} N={n} K={k}: {media_pkts} media packets ({datagrams} datagrams incl. RTCP)",
        if rtp_mode { "rtp" } else { "frame" }
    );
    println!(
        "  CPU per packet (encrypt+send+decrypt+receive): {:.2} µs; allocs per packet: {:.2}",
        cpu.as_secs_f64() * 1e6 / media_pkts as f64,
        allocs as f64 / media_pkts as f64
    );
    println!(
        "  CPU per call per 20 ms tick (both directions, both ends): {:.2} µs  => per server side ≈ half",
        cpu.as_secs_f64() * 1e6 / (n as f64 * k as f64)
    );
    for (name, p) in [("server[0]", &servers[0]), ("client[0]", &clients[0])] {
        println!(
            "  {name}: rx {} frames {} bytes; ingress stats events {} (loss {:?}, rtt {:?})",
            p.rx_frames, p.rx_bytes, p.ingress_stats, p.last_loss, p.last_rtt
        );
    }
    let _ = Arc::new(()); // keep import used across modes
}

fn pump(
    net: &mut Net,
    servers: &mut [Peer],
    clients: &mut [Peer],
    demux: &mut Demux,
    server_addr: SocketAddr,
    now: Instant,
) {
    loop {
        while let Some(p) = net.q.pop_front() {
            if p.dst == server_addr {
                if let Some(i) = demux.route(&p) {
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: p.src,
                            destination: p.dst,
                            contents: p.buf.as_slice().try_into().expect("datagram"),
                        },
                    );
                    if servers[i].rtc.accepts(&input) {
                        servers[i].input(input, net);
                        demux.by_addr.entry(p.src).or_insert(i);
                    }
                }
            } else if let Some(c) = clients.iter_mut().find(|c| c.addr == p.dst) {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: p.src,
                        destination: p.dst,
                        contents: p.buf.as_slice().try_into().expect("datagram"),
                    },
                );
                c.input(input, net);
            }
            net.pool.push(p.buf);
        }
        // timers
        for p in servers.iter_mut().chain(clients.iter_mut()) {
            if p.timeout <= now {
                p.input(Input::Timeout(now), net);
            }
        }
        if net.q.is_empty() {
            break;
        }
    }
}

// Compile-time check: an Rtc can move between worker threads (e.g. handed to the worker
// whose socket the browser's 4-tuple hashes to under SO_REUSEPORT).
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Rtc>();
}
