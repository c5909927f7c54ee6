//! The real binary over real sockets: TCP framing, UDP response routing with rport, and
//! `parley call` as a UAC (against Parley itself, and against a sipp trunk that challenges).

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn options(branch: &str, via: &str, cseq: u32) -> String {
    format!(
        "OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: {branch}@probe\r\nCSeq: {cseq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Reads one response from a stream: headers, then Content-Length bytes of body.
fn read_response(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while find(&buf, b"\r\n\r\n").is_none() {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(head)
}

#[test]
fn tcp_framing_error_closes_only_that_connection() {
    let parley = Parley::start(&[]);
    let mut good = TcpStream::connect(parley.sip_addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = good.local_addr().unwrap();
    good.write_all(options("tcp1", &format!("TCP {local}"), 1).as_bytes())
        .unwrap();
    let resp = read_response(&mut good).unwrap();
    assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}");

    // A message over TCP without Content-Length cannot be framed: that connection is closed.
    let mut bad = TcpStream::connect(parley.sip_addr).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let no_length = options("tcp2", "TCP 127.0.0.1:9", 1).replace("Content-Length: 0\r\n", "");
    bad.write_all(no_length.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let n = bad.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&rest)
    );

    // The other connection is unaffected, and two messages in one write are both framed.
    let two = format!(
        "{}{}",
        options("tcp3", &format!("TCP {local}"), 2),
        options("tcp4", &format!("TCP {local}"), 3)
    );
    good.write_all(two.as_bytes()).unwrap();
    for _ in 0..2 {
        let resp = read_response(&mut good).unwrap();
        assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}");
    }
    assert!(parley.healthy());
    let metrics = parley.metrics();
    assert_eq!(
        metric_value(&metrics, "parley_sip_tcp_framing_errors_total"),
        Some(1.0)
    );
}

#[test]
fn udp_responses_follow_rport_and_received() {
    let parley = Parley::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    // The Via names a port nobody listens on; with rport the answer comes to our socket anyway.
    let msg = options("udp1", "UDP 127.0.0.1:9;rport", 1);
    socket.send_to(msg.as_bytes(), parley.sip_addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(resp.starts_with("SIP/2.0 200 OK"), "{resp}");
    assert!(
        resp.contains(&format!("rport={port}")) && resp.contains("received=127.0.0.1"),
        "{resp}"
    );
    assert!(
        resp.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
        "{resp}"
    );
}

#[test]
fn parley_call_places_a_call_to_parley_and_is_recorded() {
    let speech = speech_s16_wav();
    if !require(
        "parley_call_places_a_call_to_parley_and_is_recorded",
        "the speech fixture (scripts/setup.sh)",
        speech.exists(),
    ) {
        return;
    }
    let greeting = speech.to_string_lossy().to_string();
    let callee = Parley::start(&[("PARLEY_MEDIA_GREETING", greeting.as_str())]);
    let (lo, hi) = rtp_port_range();
    let caller_data = callee.scratch_dir("caller-data");
    let output = Command::new(parley_bin())
        .args(["call", &format!("sip:agent@{}", callee.sip_addr)])
        .arg("--wav")
        .arg(&speech)
        .args(["--bind", "127.0.0.1:0"])
        .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
        .env("PARLEY_DATA_DIR", &caller_data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "parley call failed: {stderr}");
    assert!(stderr.contains("answered: 200"), "{stderr}");
    // The callee recorded what the caller played: about the length of the WAV.
    let recordings = callee.data_dir.join("recordings");
    let file = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        std::fs::read_dir(&recordings)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "wav"))
    })
    .expect("a recording on the callee");
    let wav = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        read_wav(&file)
            .ok()
            .filter(|w| w.duration() > Duration::from_secs(1))
    })
    .expect("a finished recording");
    let secs = wav.duration().as_secs_f64();
    assert!(
        (4.5..7.5).contains(&secs),
        "recorded {secs} s of a 5.7 s prompt"
    );
    assert!(wav.rms() > 0.01, "speech, not silence: rms {}", wav.rms());
    // And the caller recorded the callee's greeting.
    let caller_recordings = caller_data.join("recordings");
    let file = std::fs::read_dir(&caller_recordings)
        .expect("caller recordings")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
        .expect("a recording on the caller");
    let wav = read_wav(&file).expect("finished caller recording");
    assert!(
        wav.duration() > Duration::from_secs(3),
        "{:?}",
        wav.duration()
    );
    assert!(
        wav.rms() > 0.01,
        "the greeting, not silence: rms {}",
        wav.rms()
    );
    callee.wait_for_metric("parley_active_calls", 0.0, Duration::from_secs(10));
    callee.wait_for_metric("parley_rtp_ports_in_use", 0.0, Duration::from_secs(10));
}

#[test]
fn parley_call_answers_a_digest_challenge() {
    if !require_sipp("parley_call_answers_a_digest_challenge") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut trunk = Command::new("sipp")
        .args(["-sf", scenario_path("uas_digest").to_str().unwrap()])
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_udp_block(4).to_string()])
        .args([
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // sipp is listening once its UDP port is taken.
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        UdpSocket::bind(("127.0.0.1", port)).err()
    })
    .expect("sipp trunk listening");
    let (lo, hi) = rtp_port_range();
    let output = Command::new(parley_bin())
        .args(["call", &format!("sip:+15550001111@127.0.0.1:{port}")])
        .args([
            "--username",
            "alice",
            "--password",
            "secret",
            "--duration",
            "0.5",
        ])
        .args(["--bind", "127.0.0.1:0"])
        .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
        .env("PARLEY_DATA_DIR", dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        trunk.try_wait().ok().flatten()
    });
    if status.is_none() {
        let _ = trunk.kill();
    }
    assert!(output.status.success(), "parley call failed: {stderr}");
    assert!(stderr.contains("answered: 200"), "{stderr}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the sipp trunk saw a valid Authorization and a clean BYE: {status:?}"
    );
}
