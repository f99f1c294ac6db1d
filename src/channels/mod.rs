//! Outgoing channels: one module per platform, each implementing [`crate::outbox::Channel`].

pub mod chat;
pub mod coalesce;
pub mod email;
pub mod hook_client;
pub mod hook_limits;
pub mod kakao;
pub mod telegram;
pub mod webex;
pub mod webhook;

/// Whether a channel is on, and if not, why: decided once at start-up (`startup`), where the
/// channels are built, logged there and shown on the operator's page (`web::operator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The channel's name, as deliveries name it (`deliveries.channel`).
    pub name: &'static str,
    pub mode: ChannelMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMode {
    /// Sending.
    On,
    /// Off because these settings are not set (a missing credential is not an error).
    Off { missing: Vec<&'static str> },
    /// E-mail without `HERALD_SMTP_URL`: written to this folder instead of sent.
    Spool { folder: std::path::PathBuf },
}

impl ChannelStatus {
    pub fn on(name: &'static str) -> ChannelStatus {
        ChannelStatus {
            name,
            mode: ChannelMode::On,
        }
    }

    pub fn off(name: &'static str, missing: &[&'static str]) -> ChannelStatus {
        ChannelStatus {
            name,
            mode: ChannelMode::Off {
                missing: missing.to_vec(),
            },
        }
    }

    /// The one log line a channel that is not plainly on gets at start-up.
    pub fn log(&self) {
        match &self.mode {
            ChannelMode::On => {}
            ChannelMode::Off { missing } => tracing::info!(
                channel = self.name,
                "{} is disabled: {} {} not set",
                self.name,
                missing.join(" and "),
                if missing.len() == 1 { "is" } else { "are" }
            ),
            ChannelMode::Spool { folder } => tracing::info!(
                spool = %folder.display(),
                "HERALD_SMTP_URL is not set: e-mail is written to the spool folder instead of sent"
            ),
        }
    }
}
