//! Parley: a voice-AI engine. See DESIGN.md for the architecture.

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
pub mod providers;
pub mod server;
pub mod sip;
pub mod store;
pub mod webhooks;
