//! Where SIP, media, billing and the agent meet: admission, routing and the per-call session
//! (`manager`), calls placed through trunks (`originate`) and from the command line
//! (`outbound`), a call's media, billing lease and record, live calls, per-account call
//! limits and the RTP port pool.

pub mod core;
pub mod lease;
pub mod limits;
pub mod manager;
pub mod media;
pub mod originate;
pub mod outbound;
pub mod ports;
pub mod record;
pub mod registry;
pub mod signalling;
pub mod webrtc;
