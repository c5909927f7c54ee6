//! `parley call`: one outbound call from the command line, the UAC side of the stack.
//! It offers SDP, follows the INVITE through provisional, redirect, challenge and final
//! responses, plays a WAV once answered, records the far end, and hangs up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::call::media::{self, CallMedia, MediaStart};
use crate::call::ports::PortPool;
use crate::config::{recording_name, Config};
use crate::metrics::Metrics;
use crate::sip::auth::Credentials;
use crate::sip::endpoint::{EndReason, Event, Invite};
use crate::sip::headers::SipUri;
use crate::sip::next_hop;
use crate::sip::runtime::{self, Command};
use crate::sip::sdp::{self, Direction, LocalCaps, Origin, SessionDescription};
use parley_media::engine::MediaEngine;
use parley_media::session::MediaEvent;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone)]
pub struct OutboundCall {
    pub target: String,
    pub wav: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Hang up after this long once answered; default: when the WAV has played (or at once).
    pub duration: Option<Duration>,
    pub bind: SocketAddr,
    pub from_user: String,
    /// Digits to send (RFC 4733 when negotiated, in-band otherwise) `dtmf_at` after answer.
    pub dtmf: Option<String>,
    pub dtmf_at: Duration,
}

/// How long each digit of `--dtmf` is held; digits follow each other with the sender's gap.
const DTMF_DIGIT_MS: u32 = 120;

enum MediaStep {
    PromptDone,
    Event(MediaEvent),
}

/// The next thing the call's media has to say; pending while there is no media.
async fn media_step(media: &mut Option<CallMedia>) -> MediaStep {
    let Some(m) = media else {
        return std::future::pending().await;
    };
    let (prompt, events) = m.split_waits();
    tokio::select! {
        _ = prompt => MediaStep::PromptDone,
        Some(ev) = events => MediaStep::Event(ev),
        else => std::future::pending().await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot start the media engine: {0}")]
    Media(String),
    #[error("bad target {0:?}: {1}")]
    Target(String, String),
    #[error("cannot read {0}: {1}")]
    Wav(String, String),
    #[error("cannot start SIP on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("no free RTP port in {0}")]
    NoPorts(String),
    #[error("call failed with status {0}")]
    Failed(u16),
    #[error("the answer's SDP is unusable: {0}")]
    Sdp(String),
}

/// Places the call and returns when it is over. Ok carries how the call ended.
pub async fn place_call(config: &Config, opts: OutboundCall) -> Result<EndReason, CallError> {
    let uri = SipUri::parse(&opts.target)
        .map_err(|e| CallError::Target(opts.target.clone(), e.to_string()))?;
    let peer = next_hop::resolve(&uri)
        .await
        .map_err(|e| CallError::Target(opts.target.clone(), e))?;
    let prompt = match &opts.wav {
        Some(path) => {
            let audio = parley_media::read_wav(path)
                .map_err(|e| CallError::Wav(path.display().to_string(), e.to_string()))?;
            Some(Arc::new(parley_media::resample_linear(
                &audio.samples,
                audio.sample_rate,
                parley_media::playout::ENGINE_RATE,
            )))
        }
        None => None,
    };

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let sip = runtime::start(
        opts.bind,
        config.endpoint_config(),
        config.sip.external_ip,
        events_tx,
    )
    .await
    .map_err(|e| CallError::Bind(opts.bind, e))?;
    let metrics = Arc::new(Metrics::default());
    let local_ip: IpAddr = config
        .sip
        .external_ip
        .unwrap_or_else(|| runtime::local_ip_toward(peer.addr.ip()));
    let bind_ip = if opts.bind.ip().is_unspecified() {
        opts.bind.ip()
    } else {
        local_ip
    };
    let pool = PortPool::new(config.media.rtp_ports, bind_ip, metrics.clone());
    let ports = pool
        .allocate()
        .ok_or_else(|| CallError::NoPorts(config.media.rtp_ports.to_string()))?;
    let origin = Origin::new(local_ip, &mut rand::thread_rng());
    let offer = sdp::offer(
        &LocalCaps::default(),
        local_ip,
        ports.port,
        &origin,
        Direction::SendRecv,
    );
    let (reply_tx, reply_rx) = oneshot::channel();
    sip.send(Command::Invite {
        invite: Invite {
            target: opts.target.clone(),
            from_user: opts.from_user.clone(),
            sdp: offer.to_string().into_bytes(),
            credentials: opts.credentials.clone(),
            call_id: None,
        },
        peer,
        reply: reply_tx,
    });
    let (call, _local) = reply_rx.await.map_err(|_| CallError::Failed(500))?;
    eprintln!("calling {} via {}", opts.target, peer.addr);

    let mut ports = Some(ports);
    let engine = MediaEngine::start(1, None).map_err(|e| CallError::Media(e.to_string()))?;
    let mut media: Option<CallMedia> = None;
    let dropped_events = Arc::new(AtomicU64::new(0));
    let hangup_after = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(hangup_after);
    let dtmf_timer = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(dtmf_timer);
    let mut dtmf = opts.dtmf.clone();
    let mut hung_up = false;
    let result = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Progress { code, .. }) => eprintln!("progress: {code}"),
                Some(Event::Answered { response, .. }) => {
                    eprintln!("answered: {}", response.code);
                    let answer = std::str::from_utf8(&response.body)
                        .map_err(|e| e.to_string())
                        .and_then(|s| SessionDescription::parse(s).map_err(|e| e.to_string()))
                        .and_then(|a| sdp::accept_answer(&offer, &a).map_err(|e| e.to_string()));
                    let negotiated = match answer {
                        Ok(n) => n,
                        Err(e) => {
                            sip.send(Command::Hangup { call });
                            hung_up = true;
                            eprintln!("unusable SDP answer: {e}");
                            continue;
                        }
                    };
                    let call_id = response.core().map(|c| c.call_id).unwrap_or_default();
                    let record_to = config.media.record.then(|| {
                        let _ = std::fs::create_dir_all(config.recordings_dir());
                        config.recordings_dir().join(recording_name(&call_id))
                    });
                    if let Some(ports) = ports.take() {
                        let start = MediaStart {
                            transport: crate::call::media::Transport::Rtp(ports),
                            params: media::session_params(&negotiated),
                            record_to,
                            options: media::session_options(&config.media, false, "parley-call"),
                            dropped_events: dropped_events.clone(),
                            listener: None,
                        };
                        match CallMedia::start(&engine, start) {
                            Ok(mut m) => {
                                if let Some(p) = &prompt {
                                    m.play(p.clone());
                                }
                                media = Some(m);
                            }
                            Err(e) => {
                                eprintln!("cannot start media: {e}");
                                hung_up = true;
                                sip.send(Command::Hangup { call });
                            }
                        }
                    }
                    if dtmf.is_some() {
                        dtmf_timer.as_mut().reset(tokio::time::Instant::now() + opts.dtmf_at);
                    }
                    match opts.duration {
                        Some(d) => hangup_after.as_mut().reset(tokio::time::Instant::now() + d),
                        // Nothing to play and no duration: hang up at once.
                        None if prompt.is_none() && !hung_up => {
                            hung_up = true;
                            sip.send(Command::Hangup { call });
                        }
                        None => {}
                    }
                }
                Some(Event::Ended { reason, .. }) => break Ok(reason),
                Some(_) => {}
                None => break Err(CallError::Failed(500)),
            },
            step = media_step(&mut media) => {
                let done = match step {
                    MediaStep::PromptDone => opts.duration.is_none(),
                    MediaStep::Event(MediaEvent::RtpTimeout) => {
                        eprintln!("no RTP from the far end, hanging up");
                        true
                    }
                    MediaStep::Event(MediaEvent::Dtmf(d)) => {
                        // The far end's keys, for the user at the terminal (and tests).
                        eprintln!("DTMF received: {} ({} ms)", d.digit, d.duration_ms);
                        false
                    }
                    MediaStep::Event(_) => false,
                };
                if done && !hung_up {
                    hung_up = true;
                    sip.send(Command::Hangup { call });
                }
            }
            _ = &mut dtmf_timer, if dtmf.is_some() && media.is_some() => {
                if let (Some(digits), Some(m)) = (dtmf.take(), media.as_ref()) {
                    for digit in digits.chars() {
                        m.send_dtmf(digit, DTMF_DIGIT_MS);
                    }
                }
            }
            _ = &mut hangup_after, if !hung_up => {
                hung_up = true;
                sip.send(Command::Hangup { call });
            }
            _ = tokio::signal::ctrl_c(), if !hung_up => {
                eprintln!("hanging up");
                hung_up = true;
                sip.send(Command::Hangup { call });
            }
        }
    };
    if let Some(m) = media {
        m.stop().await;
    }
    match result {
        Ok(EndReason::Failed(code)) => Err(CallError::Failed(code)),
        other => other,
    }
}
