//! The Vulkan engine's error type: a few cases a user can act on, each message saying what to do;
//! and its mapping onto the engine boundary's `EngineError` (the cases the fallback matches).

use ash::vk;

use crate::engine::fit::Refusal;
use crate::engine::EngineError;

/// Why the Vulkan engine could not load or run; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VkError {
    #[error(
        "vulkan: cannot load the Vulkan loader library (libvulkan.so.1): {0}. Install it \
         (Debian / Raspberry Pi OS: `sudo apt-get install libvulkan1` plus a driver such as the \
         NVIDIA driver or mesa-vulkan-drivers), or use `--backend cpu`"
    )]
    /// `libvulkan.so.1` could not be opened (its error).
    NoLoader(String),
    /// No device the engine can use (why each was skipped).
    #[error("vulkan: no usable device: {0}. `pigpu run --list-devices` shows what exists and why each one was skipped")]
    NoDevice(String),
    /// The device lacks a feature or limit the engine needs (which one).
    #[error("vulkan: {0} is not supported; use another device (`--device`) or `--backend cpu`")]
    Unsupported(String),
    #[error(
        "vulkan: out of device memory allocating {what} ({mib:.1} MiB); use a smaller `--ctx`, \
         a smaller model, or a device with more memory"
    )]
    /// A device allocation failed.
    OutOfDeviceMemory {
        /// What was being allocated.
        what: String,
        /// Its size, in MiB.
        mib: f64,
    },
    #[error(
        "vulkan: the device was lost (driver crash, reset or a GPU hang); check `dmesg` and \
         `pigpu doctor`, then try again"
    )]
    /// `VK_ERROR_DEVICE_LOST`: the driver reset or lost the GPU.
    DeviceLost,
    /// A wait on the GPU did not finish in time.
    #[error("vulkan: {what} timed out after {secs} s (the GPU stopped responding)")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// The memory check before upload refused the model (fit.rs).
    #[error("vulkan: {0}")]
    DoesNotFit(Box<Refusal>),
    /// Bytes uploaded to the device after load (token ids, sampling parameters).
    #[error("vulkan: {what} failed: {result}")]
    Other {
        /// The call, in words.
        what: &'static str,
        /// The `VkResult` it returned.
        result: vk::Result,
    },
}

impl VkError {
    /// Maps a `vk::Result` from the call `what` to the matching case.
    pub fn from_vk(what: &'static str, result: vk::Result) -> VkError {
        match result {
            vk::Result::ERROR_DEVICE_LOST => VkError::DeviceLost,
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                VkError::OutOfDeviceMemory {
                    what: what.to_string(),
                    mib: 0.0,
                }
            }
            _ => VkError::Other { what, result },
        }
    }
}

/// `result.map_err(vkerr("vkCreateBuffer"))`.
pub fn vkerr(what: &'static str) -> impl Fn(vk::Result) -> VkError {
    move |r| VkError::from_vk(what, r)
}

pub type Result<T, E = VkError> = std::result::Result<T, E>;

impl VkError {
    /// Whether the GPU is gone or failing (as opposed to missing, unsupported or too small).
    fn kind(&self) -> fn(anyhow::Error) -> EngineError {
        match self {
            VkError::DeviceLost | VkError::Timeout { .. } => EngineError::DeviceLost,
            VkError::OutOfDeviceMemory { .. } => EngineError::OutOfMemory,
            VkError::Other { .. } => EngineError::Gpu,
            VkError::NoLoader(_)
            | VkError::NoDevice(_)
            | VkError::Unsupported(_)
            | VkError::DoesNotFit(_) => EngineError::Other,
        }
    }
}

impl From<VkError> for EngineError {
    fn from(e: VkError) -> EngineError {
        match e {
            VkError::DoesNotFit(r) => EngineError::DoesNotFit(r),
            e => e.kind()(anyhow::Error::new(e)),
        }
    }
}

/// Maps an engine-internal error (a `VkError` under context lines, or not the GPU's at all)
/// onto the boundary's case, keeping the whole chain for the message.
pub fn to_engine(e: anyhow::Error) -> EngineError {
    match e.chain().find_map(|c| c.downcast_ref::<VkError>()) {
        Some(VkError::DoesNotFit(r)) => EngineError::DoesNotFit(r.clone()),
        Some(v) => v.kind()(e),
        None => EngineError::Other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn vulkan_errors_map_onto_the_boundary() {
        let gpu = |e: VkError| EngineError::from(e).is_gpu_failure();
        assert!(gpu(VkError::DeviceLost));
        assert!(gpu(VkError::Timeout {
            what: "a submit",
            secs: 5
        }));
        assert!(gpu(VkError::from_vk(
            "vkAllocateMemory",
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY
        )));
        assert!(gpu(VkError::from_vk(
            "vkQueueSubmit",
            vk::Result::ERROR_UNKNOWN
        )));
        assert!(!gpu(VkError::NoDevice("none".into())));
        assert!(!gpu(VkError::Unsupported("x".into())));
        assert!(matches!(
            EngineError::from(VkError::DeviceLost),
            EngineError::DeviceLost(_)
        ));
        assert!(matches!(
            EngineError::from(VkError::from_vk("x", vk::Result::ERROR_OUT_OF_HOST_MEMORY)),
            EngineError::OutOfMemory(_)
        ));
    }

    #[test]
    fn context_lines_are_kept_and_the_case_found_under_them() {
        let r: Result<()> = Err(VkError::DeviceLost);
        let e = r.context("waiting for a decode step").unwrap_err();
        let mapped = to_engine(e);
        assert!(matches!(mapped, EngineError::DeviceLost(_)));
        let text = format!("{:#}", anyhow::Error::from(mapped));
        assert!(
            text.starts_with("waiting for a decode step: vulkan: the device was lost"),
            "{text}"
        );
        assert!(matches!(
            to_engine(anyhow::anyhow!("not the GPU's")),
            EngineError::Other(_)
        ));
    }
}
