//! Turning events into messages people read.

pub mod render;
