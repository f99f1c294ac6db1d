//! Outgoing channels: one module per platform, each implementing [`crate::outbox::Channel`].

pub mod email;
pub mod telegram;
pub mod webhook;
