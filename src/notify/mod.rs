//! Turning events into messages people read.

pub mod mail;
pub mod render;
