//! The SIP stack: message parsing over rsip, transports, transactions, dialogs and the
//! user agent core. It knows nothing about media or AI; `call::` ties it to them.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod headers;
pub mod message;
pub mod runtime;
pub mod sdp;
pub mod transaction;
