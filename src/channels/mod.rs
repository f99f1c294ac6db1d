//! Outgoing channels: one module per platform, each implementing [`crate::outbox::Channel`].

pub mod chat;
pub mod email;
pub mod telegram;
pub mod webhook;
