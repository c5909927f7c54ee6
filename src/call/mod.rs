//! Where SIP, media and (later) the agent meet: admission, per-call sessions, RTP ports.

pub mod lease;
pub mod limits;
pub mod manager;
pub mod media;
pub mod originate;
pub mod outbound;
pub mod ports;
pub mod record;
pub mod registry;
