//! Dialogs (RFC 3261 §12): the state two user agents share for the life of a call, and the
//! construction of requests inside it (CSeq, Route set, remote target).

use super::headers::{NameAddr, SipUri};
use super::message::{Core, Headers, Method, ParseError, Request, Response};

/// Identifies a dialog from our side: Call-ID, our tag, the peer's tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our From (UAC) or To (UAS), with our tag.
    pub local: NameAddr,
    pub remote: NameAddr,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// The peer's Contact URI: where in-dialog requests go when there is no route set.
    pub remote_target: String,
    /// Record-Route URIs in the order our requests must list them in Route.
    pub route_set: Vec<String>,
    /// Our Contact URI.
    pub local_contact: String,
}

impl Dialog {
    /// The UAS side of a dialog created by an INVITE we answer (RFC 3261 §12.1.1).
    pub fn as_uas(
        req: &Request,
        core: &Core,
        local_tag: &str,
        local_contact: &str,
        local_seq: u32,
    ) -> Result<Dialog, ParseError> {
        // RFC 2543 peers may omit Contact; their From URI is the best target we have.
        let remote_target = match req.headers.get("Contact") {
            Some(_) => contact_uri(&req.headers)?,
            None => core.from.uri.clone(),
        };
        Ok(Dialog {
            id: DialogId {
                call_id: core.call_id.clone(),
                local_tag: local_tag.to_string(),
                remote_tag: core.from.tag().unwrap_or_default().to_string(),
            },
            state: DialogState::Early,
            local: core.to.with_tag(local_tag),
            remote: core.from.clone(),
            local_seq,
            remote_seq: Some(core.cseq.seq),
            remote_target,
            route_set: record_route(&req.headers),
            local_contact: local_contact.to_string(),
        })
    }

    /// The UAC side of a dialog created by a response to our INVITE (RFC 3261 §12.1.2).
    pub fn as_uac(
        req: &Request,
        resp: &Response,
        local_contact: &str,
    ) -> Result<Dialog, ParseError> {
        let req_core = req.core()?;
        let resp_core = resp.core()?;
        let remote_target = contact_uri(&resp.headers)?;
        let mut route_set = record_route(&resp.headers);
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: req_core.call_id.clone(),
                local_tag: req_core.from.tag().unwrap_or_default().to_string(),
                remote_tag: resp_core.to.tag().unwrap_or_default().to_string(),
            },
            state: if resp.code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local: req_core.from,
            remote: resp_core.to,
            local_seq: req_core.cseq.seq,
            remote_seq: None,
            remote_target,
            route_set,
            local_contact: local_contact.to_string(),
        })
    }

    /// Checks an in-dialog request's CSeq (RFC 3261 §12.2.2): lower than the last one seen
    /// is out of order and gets 500. Updates the remote sequence.
    pub fn accept_remote_cseq(&mut self, method: &Method, seq: u32) -> bool {
        // ACK and CANCEL reuse the CSeq number of the request they belong to.
        if matches!(method, Method::Ack | Method::Cancel) {
            return true;
        }
        match self.remote_seq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Applies a target refresh (re-INVITE or UPDATE with a Contact).
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Ok(uri) = contact_uri(headers) {
            self.remote_target = uri;
        }
    }

    /// Where an in-dialog request goes first: the first route when loose routing, else the
    /// remote target (RFC 3261 §12.2.1.1 with strict routing left out, see
    /// docs/sip-compliance.md).
    pub fn next_hop(&self) -> Option<SipUri> {
        let first = self.route_set.first().map(|r| {
            NameAddr::parse(r, "Route")
                .map(|n| n.uri)
                .unwrap_or_else(|_| r.clone())
        });
        SipUri::parse(first.as_deref().unwrap_or(&self.remote_target)).ok()
    }

    /// A new in-dialog request (not ACK/CANCEL): CSeq advanced, Route set applied. The caller
    /// adds the Via with a fresh branch.
    pub fn new_request(&mut self, method: Method, user_agent: &str) -> Request {
        self.local_seq += 1;
        let seq = self.local_seq;
        self.request_with_seq(method, seq, user_agent)
    }

    /// A request with an explicit CSeq number: the ACK for a 2xx uses the INVITE's.
    pub fn request_with_seq(&self, method: Method, seq: u32, user_agent: &str) -> Request {
        let mut headers = Headers::default();
        headers.push("Max-Forwards", "70");
        for route in &self.route_set {
            headers.push("Route", route);
        }
        headers.push("From", self.local.to_string());
        headers.push("To", self.remote.to_string());
        headers.push("Call-ID", &self.id.call_id);
        headers.push("CSeq", format!("{seq} {method}"));
        headers.push("Contact", format!("<{}>", self.local_contact));
        headers.push("User-Agent", user_agent);
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Vec::new(),
        }
    }
}

fn contact_uri(headers: &Headers) -> Result<String, ParseError> {
    let contact = headers.list("Contact");
    let first = contact.first().ok_or_else(|| ParseError {
        status: 400,
        reason: "missing Contact header".into(),
        partial: None,
    })?;
    Ok(NameAddr::parse(first, "Contact")?.uri)
}

fn record_route(headers: &Headers) -> Vec<String> {
    headers
        .list("Record-Route")
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    fn invite() -> Request {
        let text = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa\r\n\
            Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
            From: <sip:alice@a.example>;tag=aaa\r\n\
            To: <sip:bob@b.example>\r\n\
            Call-ID: c1\r\nCSeq: 5 INVITE\r\n\
            Contact: <sip:alice@10.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n";
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn uas_dialog_routes_through_record_route_and_counts_cseq() {
        let req = invite();
        let core = req.core().unwrap();
        let mut d = Dialog::as_uas(&req, &core, "ourtag", "sip:parley@127.0.0.1:5060", 1).unwrap();
        assert_eq!(d.id.remote_tag, "aaa");
        assert_eq!(d.remote_target, "sip:alice@10.0.0.1:5062");
        assert_eq!(d.next_hop().unwrap().host_port.host, "p1.example");
        let bye = d.new_request(Method::Bye, "Parley");
        let routes: Vec<_> = bye.headers.all("Route").collect();
        assert_eq!(routes, vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert_eq!(bye.uri, "sip:alice@10.0.0.1:5062");
        let bye_core = bye.core();
        assert!(
            bye_core.is_err(),
            "no Via yet: the transaction layer adds it"
        );
        assert!(bye.headers.get("To").unwrap().contains("tag=aaa"));
        assert!(bye.headers.get("From").unwrap().contains("tag=ourtag"));
        assert!(
            !d.accept_remote_cseq(&Method::Bye, 5),
            "same CSeq is out of order"
        );
        assert!(d.accept_remote_cseq(&Method::Bye, 6));
        assert!(d.accept_remote_cseq(&Method::Ack, 5));
    }

    #[test]
    fn uac_dialog_reverses_record_route() {
        let req = invite();
        let mut resp = Response::to(&req, 200, Some("bobtag"));
        resp.headers
            .push("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>");
        resp.headers.push("Contact", "<sip:bob@10.0.0.2>");
        let d = Dialog::as_uac(&req, &resp, "sip:parley@127.0.0.1").unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        assert_eq!(d.id.remote_tag, "bobtag");
        assert_eq!(d.state, DialogState::Confirmed);
    }
}
