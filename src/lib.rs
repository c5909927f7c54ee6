//! Parley: a voice-AI engine. See DESIGN.md for the architecture.

pub mod config;
pub mod sip;
