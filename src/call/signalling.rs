//! What a call's conversation needs from its signalling, whatever the protocol: hang up,
//! transfer, and what the other side did. SIP (`SipSignalling`: BYE, REFER, the endpoint's
//! events, the ACK's late answer and re-INVITEs) and browsers (`call::webrtc`: the WHIP
//! `DELETE`) implement it; `Call::converse` drives the call core against it.

use std::future::Future;

use tokio::sync::mpsc;

use super::manager::Offer;
use super::media;
use crate::sip::endpoint::{CallRef, EndReason, Event};
use crate::sip::message::Request;
use crate::sip::runtime::{Command, SipHandle};
use crate::sip::sdp::{self, LocalCaps, Origin, SessionDescription};
use parley_media::session::SessionParams;

/// How a call ended, as its record says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// `remote_bye`, `browser_hangup`, `webrtc_disconnected`, …; when Parley hung up, the
    /// call core's cause replaces it.
    pub cause: &'static str,
    /// `caller`, `parley` or `none`.
    pub side: &'static str,
    /// Parley ended it (its hang-up went out).
    pub local: bool,
}

impl Ending {
    /// The other side hung up, or its transport went away, for `cause`.
    pub fn remote(cause: &'static str) -> Ending {
        Ending {
            cause,
            side: "caller",
            local: false,
        }
    }

    /// Parley hung up.
    pub fn local() -> Ending {
        Ending {
            cause: "local_bye",
            side: "parley",
            local: true,
        }
    }

    /// The process stopped with the call up.
    pub fn shutdown() -> Ending {
        Ending {
            cause: "shutdown",
            side: "parley",
            local: false,
        }
    }

    /// How a SIP dialog's end reads in the record.
    pub fn from_sip(reason: Option<&EndReason>) -> Ending {
        let (cause, side) = match reason {
            Some(EndReason::RemoteBye) => ("remote_bye", "caller"),
            Some(EndReason::LocalBye) => return Ending::local(),
            Some(EndReason::Cancelled) => ("cancelled", "caller"),
            Some(EndReason::AckTimeout) => ("ack_timeout", "parley"),
            Some(EndReason::Rejected(_)) => ("rejected", "none"),
            Some(EndReason::Failed(_)) => ("failed", "none"),
            None => return Ending::shutdown(),
        };
        Ending {
            cause,
            side,
            local: false,
        }
    }
}

/// What the signalling reports to the conversation.
#[derive(Debug)]
pub enum Signal {
    Ended(Ending),
    /// The answer to our transfer request (REFER).
    ReferAnswered {
        code: u16,
    },
    /// How the transferred call is going (NOTIFY sipfrag).
    TransferProgress {
        status: u16,
        terminated: bool,
    },
    /// The media changed (a late answer in the ACK, a re-INVITE): the session's new
    /// parameters.
    MediaChanged(SessionParams),
}

pub trait Signalling: Send {
    /// Ends the call from Parley's side; [`Signal::Ended`] follows.
    fn hang_up(&mut self);
    /// Asks the other side to call `target` instead; false when this signalling cannot.
    fn refer(&mut self, target: String) -> bool;
    /// The next thing the other side did (what only the signalling cares about, such as a
    /// re-INVITE's answer, it handles here).
    fn next(&mut self) -> impl Future<Output = Signal> + Send;
}

/// A SIP call's signalling: its dialog in the endpoint, through the SIP runtime.
pub(super) struct SipSignalling {
    pub(super) sip: SipHandle,
    pub(super) call: CallRef,
    pub(super) origin: Origin,
    pub(super) media: Offer,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
}

impl Signalling for SipSignalling {
    fn hang_up(&mut self) {
        self.sip.send(Command::Hangup { call: self.call });
    }

    fn refer(&mut self, target: String) -> bool {
        tracing::info!(%target, "transferring the caller (REFER)");
        self.sip.send(Command::Refer {
            call: self.call,
            target,
        });
        true
    }

    async fn next(&mut self) -> Signal {
        loop {
            match self.events.recv().await {
                Some(Event::Ended { reason, .. }) => {
                    return Signal::Ended(Ending::from_sip(Some(&reason)))
                }
                None => return Signal::Ended(Ending::shutdown()),
                Some(Event::Confirmed { body, .. }) => {
                    if let Some(params) = self.on_ack(&body) {
                        return Signal::MediaChanged(params);
                    }
                }
                Some(Event::Reinvite { request, .. }) => {
                    if let Some(params) = self.on_reinvite(&request) {
                        return Signal::MediaChanged(params);
                    }
                }
                Some(Event::ReferAnswered { code, .. }) => {
                    tracing::info!(code, "REFER answered");
                    return Signal::ReferAnswered { code };
                }
                Some(Event::TransferProgress {
                    status, terminated, ..
                }) => {
                    tracing::info!(status, terminated, "transfer progress");
                    return Signal::TransferProgress { status, terminated };
                }
                Some(_) => {}
            }
        }
    }
}

impl SipSignalling {
    /// The late answer in the ACK: the media it sets up.
    fn on_ack(&mut self, body: &[u8]) -> Option<SessionParams> {
        let Offer::Ours(offer) = &self.media else {
            return None;
        };
        let answer = std::str::from_utf8(body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        match answer.map(|a| sdp::accept_answer(offer, &a)) {
            Some(Ok(negotiated)) => Some(media::session_params(&negotiated)),
            _ => {
                // RFC 3261 §13.2.1: an unusable answer in the ACK leaves us to end the call.
                tracing::info!("no usable SDP answer in the ACK, hanging up");
                self.sip.send(Command::Hangup { call: self.call });
                None
            }
        }
    }

    /// A re-INVITE answered; the media it changes to, when it does.
    fn on_reinvite(&mut self, request: &Request) -> Option<SessionParams> {
        let call = self.call;
        if request.body.is_empty() {
            // A re-INVITE without an offer asks for ours; offer the current session again.
            let sdp = match &self.media {
                Offer::Answered { answer, .. } => answer.to_string(),
                Offer::Ours(offer) => offer.to_string(),
            };
            self.sip.send(Command::RespondReinvite {
                call,
                code: 200,
                sdp: Some(sdp.into_bytes()),
            });
            return None;
        }
        let offer = std::str::from_utf8(&request.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        let local_port = match &self.media {
            Offer::Answered { answer, .. } => answer.media.first().map(|m| m.port),
            Offer::Ours(offer) => offer.media.first().map(|m| m.port),
        }
        .unwrap_or(0);
        let local_ip = self.origin.address.parse().unwrap_or([127, 0, 0, 1].into());
        self.origin.bump_version();
        let result = offer.ok_or("bad SDP".to_string()).and_then(|offer| {
            sdp::answer(
                &offer,
                &LocalCaps::default(),
                local_ip,
                local_port,
                &self.origin,
            )
            .map_err(|e| e.to_string())
        });
        match result {
            Ok((answer, negotiated)) => {
                tracing::info!(direction = %negotiated.direction, remote = ?negotiated.remote_addr, "re-INVITE accepted");
                let params = media::session_params(&negotiated);
                self.sip.send(Command::RespondReinvite {
                    call,
                    code: 200,
                    sdp: Some(answer.to_string().into_bytes()),
                });
                self.media = Offer::Answered { answer, negotiated };
                Some(params)
            }
            Err(e) => {
                // The session continues unchanged (RFC 3261 §14.2).
                tracing::info!(error = %e, "re-INVITE refused with 488");
                self.sip.send(Command::RespondReinvite {
                    call,
                    code: 488,
                    sdp: None,
                });
                None
            }
        }
    }
}
