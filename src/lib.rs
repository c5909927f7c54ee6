//! Parley: a voice-AI engine. Calls over SIP, SMS and web chat answered by an AI agent,
//! with the control plane around them. `docs/architecture.md` in the repository describes
//! the modules, threads and the path of a call and of an SMS.

pub mod agent;
pub mod api;
pub mod call;
pub mod channels;
pub mod cluster;
pub mod config;
pub mod drain;
pub mod events;
pub mod memory;
pub mod metrics;
pub mod ops;
pub mod priority;
pub mod providers;
pub mod server;
pub mod sip;
pub mod store;
pub mod webhooks;
