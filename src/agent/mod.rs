//! The agent side of a call: turn-taking, barge-in, conversation context and tools, as a
//! sans-I/O [`conversation::Conversation`] driven by a tokio task per call
//! ([`session::run`]). Also the built-in receptionist that answers when no AI provider is
//! configured ([`menu`]), an account's stored agent laid over the config file's
//! ([`profile`]), and the agent's replies on the text channels, SMS and web chat ([`text`]).

pub mod conversation;
pub mod heard;
pub mod menu;
pub mod profile;
pub mod sentences;
pub mod session;
pub mod text;
pub mod tools;
