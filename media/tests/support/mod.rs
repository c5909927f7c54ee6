//! Helpers shared by integration tests (each test binary includes what it needs with
//! `mod support;`).

pub mod webrtc_client;
