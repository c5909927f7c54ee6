//! SMS over Twilio: signed webhooks in ([`webhook`]; their HTTP side is `api::twilio`), the outbox and REST sends out
//! ([`outbox`], [`rest`]), segment counting, business hours.

pub mod hours;
pub mod outbox;
pub mod rest;
pub mod segments;
pub mod signature;
pub mod webhook;
