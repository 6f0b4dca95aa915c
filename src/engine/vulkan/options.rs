//! `VulkanOptions`: how to open a Vulkan engine (context length, the upload's progress listener
//! and the knobs). Its own file so that `shared` (the device-wide part) and `engine` (one
//! engine over it) both read it from below instead of from each other.

use super::tuning::Tuning;
use crate::sys::progress::Reporter;

/// How to open the engine.
#[derive(Debug, Clone)]
pub struct VulkanOptions {
    /// Context length (KV cache positions).
    pub n_ctx: usize,
    /// Hears how far the weights' upload is (the command layer draws it).
    pub progress: Reporter,
    /// Device choice, validation, shapes and paths (every knob documented there).
    pub tuning: Tuning,
}

impl Default for VulkanOptions {
    fn default() -> Self {
        VulkanOptions {
            n_ctx: 2048,
            progress: Default::default(),
            tuning: Tuning::default(),
        }
    }
}
