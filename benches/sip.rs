//! The control plane's per-call signalling work, without sockets: parsing and serializing a
//! carrier's INVITE with SDP, SDP offer/answer, the transaction state machines' whole lives
//! on simulated time, and one whole inbound call through the sans-I/O endpoint (what the SIP
//! runtime task does per call, minus the UDP syscalls).
//!
//!     cargo bench --bench sip
//!
//! Each figure is per operation on one core. The endpoint bench drives calls back to back on
//! one long-lived `Endpoint` whose simulated clock advances 1 ms per call, so it carries the
//! transactions a server at 1,000 calls/s carries (UDP transactions live 32 s after their
//! final response: about 64,000 of them here).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use parley::sip::endpoint::{
    Endpoint, EndpointConfig, Event, Output as EpOutput, Peer, TransportKind,
};
use parley::sip::message::{self, Message, Request, Response};
use parley::sip::sdp::{self, Direction, LocalCaps, Origin, SessionDescription};
use parley::sip::transaction::{
    InviteClient, InviteServer, NonInviteClient, Output, TimerConfig, Transaction,
};

/// A carrier's offer as trunks send it: G.711 both laws, G.729, telephone-event, ptime.
const CARRIER_SDP: &str = "v=0\r\n\
o=BroadWorks 728461 1 IN IP4 203.0.113.20\r\n\
s=-\r\n\
c=IN IP4 203.0.113.21\r\n\
t=0 0\r\n\
m=audio 31514 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n";

/// A carrier INVITE through one proxy (two Vias, Record-Route), with the identity and
/// session-timer headers trunks add. `{id}` makes Call-ID, branch and tag unique.
fn carrier_invite(id: u64) -> String {
    format!(
        "INVITE sip:+14155550100@192.0.2.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.20:5060;branch=z9hG4bK-edge-{id};rport\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;received=198.51.100.7;branch=z9hG4bK-core-{id}\r\n\
Record-Route: <sip:203.0.113.20;lr;ftag=car{id}>\r\n\
Max-Forwards: 68\r\n\
From: \"WIRELESS CALLER\" <sip:+12125550199@203.0.113.20;user=phone>;tag=car{id}\r\n\
To: <sip:+14155550100@192.0.2.10;user=phone>\r\n\
Call-ID: 1c8f2e7a-{id}@203.0.113.20\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:+12125550199@203.0.113.20:5060;transport=udp>\r\n\
P-Asserted-Identity: <sip:+12125550199@203.0.113.20;user=phone>\r\n\
Diversion: <sip:+14155550111@203.0.113.20>;reason=unconditional;counter=1\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, PRACK, UPDATE, REFER, NOTIFY\r\n\
Supported: timer, 100rel, replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: Carrier-SBC/7.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{CARRIER_SDP}",
        CARRIER_SDP.len()
    )
}

/// The ACK or BYE of call `id` after our 200 with To tag `to_tag`.
fn in_dialog(method: &str, id: u64, cseq: u32, to_tag: &str) -> String {
    format!(
        "{method} sip:parley@192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.20:5060;branch=z9hG4bK-{method}-{id};rport\r\n\
Route: <sip:203.0.113.20;lr;ftag=car{id}>\r\n\
Max-Forwards: 70\r\n\
From: \"WIRELESS CALLER\" <sip:+12125550199@203.0.113.20;user=phone>;tag=car{id}\r\n\
To: <sip:+14155550100@192.0.2.10;user=phone>;tag={to_tag}\r\n\
Call-ID: 1c8f2e7a-{id}@203.0.113.20\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn local_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
}

fn parse_request(bytes: &[u8]) -> Request {
    match message::parse(bytes).expect("a valid request") {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

fn messages(c: &mut Criterion) {
    let invite = carrier_invite(1);
    let request = parse_request(invite.as_bytes());
    let offer = SessionDescription::parse(CARRIER_SDP).unwrap();
    let (answer, _) = sdp::answer(
        &offer,
        &LocalCaps::default(),
        local_ip(),
        20_000,
        &Origin::new(local_ip(), &mut rand::thread_rng()),
    )
    .unwrap();
    let answer_body = answer.to_string().into_bytes();

    let mut g = c.benchmark_group("sip_message");
    g.throughput(Throughput::Bytes(invite.len() as u64));
    g.bench_function("parse_carrier_invite", |b| {
        b.iter(|| message::parse(black_box(invite.as_bytes())).unwrap())
    });
    g.bench_function("parse_invite_and_core_headers", |b| {
        // What the endpoint does first with every datagram: the message, then the
        // Via/From/To/Call-ID/CSeq it routes on.
        b.iter(
            || match message::parse(black_box(invite.as_bytes())).unwrap() {
                Message::Request(r) => r.core().unwrap(),
                Message::Response(_) => unreachable!(),
            },
        )
    });
    g.bench_function("serialize_carrier_invite", |b| {
        b.iter(|| black_box(&request).to_bytes())
    });
    g.bench_function("build_200_with_sdp_answer", |b| {
        // The answer's bytes as the endpoint sends them: headers copied from the request,
        // a To tag, the SDP body, Content-Length, serialized.
        b.iter(|| {
            Response::to(black_box(&request), 200, Some("a1b2c3d4"))
                .with_body("application/sdp", answer_body.clone())
                .finish()
                .to_bytes()
        })
    });
    g.finish();
}

fn offer_answer(c: &mut Criterion) {
    let caps = LocalCaps::default();
    let origin = Origin::new(local_ip(), &mut rand::thread_rng());
    let offer = SessionDescription::parse(CARRIER_SDP).unwrap();
    let our_offer = sdp::offer(
        &LocalCaps::narrowband(),
        local_ip(),
        20_002,
        &origin,
        Direction::SendRecv,
    );
    let their_answer = SessionDescription::parse(
        &sdp::answer(
            &our_offer,
            &LocalCaps::narrowband(),
            "203.0.113.21".parse().unwrap(),
            31_514,
            &Origin::new("203.0.113.21".parse().unwrap(), &mut rand::thread_rng()),
        )
        .unwrap()
        .0
        .to_string(),
    )
    .unwrap();

    let mut g = c.benchmark_group("sdp");
    g.bench_function("parse_carrier_offer", |b| {
        b.iter(|| SessionDescription::parse(black_box(CARRIER_SDP)).unwrap())
    });
    g.bench_function("answer_carrier_offer", |b| {
        // Negotiation and the answer's text, as the call layer puts it in the 200.
        b.iter(|| {
            let (answer, negotiated) =
                sdp::answer(black_box(&offer), &caps, local_ip(), 20_000, &origin).unwrap();
            (answer.to_string(), negotiated)
        })
    });
    g.bench_function("parse_offer_and_answer", |b| {
        // The whole inbound step from the INVITE's body to the 200's body.
        b.iter(|| {
            let offer = SessionDescription::parse(black_box(CARRIER_SDP)).unwrap();
            let (answer, negotiated) =
                sdp::answer(&offer, &caps, local_ip(), 20_000, &origin).unwrap();
            (answer.to_string(), negotiated)
        })
    });
    g.bench_function("offer_then_accept_answer", |b| {
        // An outbound call: our offer's text, then the carrier's answer parsed and accepted.
        let answer_text = their_answer.to_string();
        b.iter(|| {
            let ours = sdp::offer(
                &LocalCaps::narrowband(),
                local_ip(),
                20_002,
                &origin,
                Direction::SendRecv,
            );
            let text = ours.to_string();
            let answer = SessionDescription::parse(black_box(&answer_text)).unwrap();
            (text, sdp::accept_answer(&ours, &answer).unwrap())
        })
    });
    g.finish();
}

/// Drains a transaction's outputs, counting transmissions; true once it says Terminated.
fn drain<T: Transaction>(tx: &mut T, sent: &mut usize) -> bool {
    let mut over = false;
    while let Some(o) = tx.poll_output() {
        match o {
            Output::Transmit(bytes) => {
                *sent += 1;
                black_box(bytes);
            }
            Output::Terminated => over = true,
            other => {
                black_box(other);
            }
        }
    }
    over
}

fn transactions(c: &mut Criterion) {
    let timers = TimerConfig::default();
    let invite = carrier_invite(1).into_bytes();
    let trying = b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n".to_vec();
    let ok = Response::to(&parse_request(&invite), 200, Some("a1b2c3d4"))
        .finish()
        .to_bytes();
    // Time is an input: one instant taken here, the transactions' clocks moved by hand.
    let t0 = Instant::now();
    let ms = Duration::from_millis;

    let mut g = c.benchmark_group("sip_transaction");
    g.bench_function("invite_server_udp_100_200_timer_l", |b| {
        // An answered inbound call's INVITE transaction: 100, 200, Accepted until timer L
        // (64*T1) ends it.
        b.iter_batched(
            || (trying.clone(), ok.clone()),
            |(trying, ok)| {
                let mut tx = InviteServer::new(timers, false);
                let mut sent = 0;
                tx.send_response(t0, 100, trying);
                tx.send_response(t0 + ms(5), 200, ok);
                drain(&mut tx, &mut sent);
                let at = tx.next_timeout().unwrap();
                tx.handle_timeout(at);
                assert!(drain(&mut tx, &mut sent) && sent == 2);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("invite_client_udp_retransmit_180_200_timer_m", |b| {
        // An outbound call's INVITE: sent, retransmitted once by timer A, then 180 and
        // 200, Accepted until timer M.
        b.iter_batched(
            || invite.clone(),
            |request| {
                let mut tx = InviteClient::new(t0, timers, false, request);
                let mut sent = 0;
                drain(&mut tx, &mut sent);
                tx.handle_timeout(t0 + timers.t1);
                drain(&mut tx, &mut sent);
                tx.on_response(t0 + ms(600), 180, Vec::new);
                tx.on_response(t0 + ms(2_000), 200, Vec::new);
                let at = tx.next_timeout().unwrap();
                tx.handle_timeout(at);
                assert!(drain(&mut tx, &mut sent) && sent == 2);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("non_invite_client_udp_bye_200_timer_k", |b| {
        // Our BYE: sent, answered 200, Completed until timer K (T4).
        b.iter_batched(
            || invite.clone(),
            |request| {
                let mut tx = NonInviteClient::new(t0, timers, false, request);
                let mut sent = 0;
                drain(&mut tx, &mut sent);
                tx.on_response(t0 + ms(40), 200);
                let at = tx.next_timeout().unwrap();
                tx.handle_timeout(at);
                assert!(drain(&mut tx, &mut sent) && sent == 1);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Inbound calls, one after another, through one long-lived endpoint on simulated time.
struct CallDriver {
    ep: Endpoint,
    peer: Peer,
    local: SocketAddr,
    answer: Vec<u8>,
    t0: Instant,
    next_id: u64,
}

impl CallDriver {
    fn new(answer: Vec<u8>) -> CallDriver {
        CallDriver {
            ep: Endpoint::new(EndpointConfig {
                timers: TimerConfig::default(),
                user_agent: "Parley-bench".into(),
            }),
            peer: Peer {
                transport: TransportKind::Udp,
                addr: "203.0.113.20:5060".parse().unwrap(),
                conn: None,
            },
            local: "192.0.2.10:5060".parse().unwrap(),
            answer,
            t0: Instant::now(),
            next_id: 0,
        }
    }

    /// Outputs since the last call: (responses sent, the Incoming call if any).
    fn drain(&mut self, out: &mut Vec<Vec<u8>>) -> Option<parley::sip::endpoint::CallRef> {
        let mut incoming = None;
        while let Some(o) = self.ep.poll_output() {
            match o {
                EpOutput::Transmit { bytes, .. } => out.push(bytes),
                EpOutput::Event(Event::Incoming { call, .. }) => incoming = Some(call),
                EpOutput::Event(e) => {
                    black_box(e);
                }
            }
        }
        incoming
    }

    /// One inbound call's signalling: INVITE in, 200 with SDP out, ACK in, BYE in and its
    /// 200 out, then the timers due by then. Returns the time spent inside the endpoint.
    fn call(&mut self) -> Duration {
        self.next_id += 1;
        let id = self.next_id;
        // 1 ms of simulated time per call: 1,000 calls/s.
        let now = self.t0 + Duration::from_millis(id);
        let invite = carrier_invite(id);
        let mut sent = Vec::new();

        let start = Instant::now();
        self.ep
            .handle_message(now, self.peer, self.local, invite.as_bytes());
        let call = self.drain(&mut sent).expect("an Incoming event");
        self.ep
            .respond(now, call, 200, Some(self.answer.clone()), &[]);
        self.drain(&mut sent);
        let mut spent = start.elapsed();

        // The harness reads our To tag from the 200 (not timed) to build ACK and BYE.
        let ok = sent.last().expect("the 200");
        let to_tag = to_tag(ok);
        let ack = in_dialog("ACK", id, 101, &to_tag);
        let bye = in_dialog("BYE", id, 102, &to_tag);
        sent.clear();

        // The call's later steps stay inside its 1 ms slot so that the clock never goes
        // back between calls.
        let us = Duration::from_micros;
        let start = Instant::now();
        self.ep
            .handle_message(now + us(100), self.peer, self.local, ack.as_bytes());
        self.ep
            .handle_message(now + us(500), self.peer, self.local, bye.as_bytes());
        self.drain(&mut sent);
        // Timers due by then: no retransmission (the ACK came), timers L and J of the
        // calls of 32 s ago.
        self.ep.handle_timeout(now + us(900));
        self.drain(&mut sent);
        spent += start.elapsed();
        assert!(!sent.is_empty(), "the BYE was answered");
        spent
    }
}

fn to_tag(response: &[u8]) -> String {
    let text = std::str::from_utf8(response).unwrap();
    let to = text
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .expect("a To header");
    let tag = to.split(";tag=").nth(1).expect("a To tag");
    tag.split(';').next().unwrap().trim().to_string()
}

fn endpoint(c: &mut Criterion) {
    let offer = SessionDescription::parse(CARRIER_SDP).unwrap();
    let (answer, _) = sdp::answer(
        &offer,
        &LocalCaps::default(),
        local_ip(),
        20_000,
        &Origin::new(local_ip(), &mut rand::thread_rng()),
    )
    .unwrap();
    let mut driver = CallDriver::new(answer.to_string().into_bytes());
    let mut g = c.benchmark_group("sip_endpoint");
    // Steady state needs 32 s of simulated calls (32,000) alive before measuring.
    g.warm_up_time(Duration::from_secs(3));
    g.bench_function("inbound_call_invite_200_ack_bye", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| driver.call()).sum())
    });
    g.finish();
    println!(
        "sip_endpoint: {} transactions alive after {} calls",
        driver.ep.transaction_count(),
        driver.next_id
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    messages(&mut c);
    offer_answer(&mut c);
    transactions(&mut c);
    endpoint(&mut c);
    c.final_summary();
}
