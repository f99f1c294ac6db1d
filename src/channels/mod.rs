//! Outgoing channels: one module per platform, each implementing [`crate::outbox::Channel`].

pub mod chat;
pub mod email;
pub mod hook_client;
pub mod kakao;
pub mod telegram;
pub mod webex;
pub mod webhook;
