//! The SIP stack: message parsing over rsip (`message`, `headers`), transactions, dialogs,
//! the user agent core (`endpoint`, sans-I/O), SDP offer/answer (`sdp`), digest
//! authentication (`auth`), the next hop's lookup (`next_hop`), and the runtime that owns the UDP and TCP sockets and drives the
//! endpoint (`runtime`). It knows nothing about media or AI; `call::` ties it to them.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod headers;
pub mod message;
pub mod next_hop;
pub mod runtime;
pub mod sdp;
pub mod transaction;
