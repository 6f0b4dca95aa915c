//! The Vulkan engine's error type: a few cases a user can act on, each message saying what to do.

use ash::vk;

#[derive(Debug, thiserror::Error)]
pub enum VkError {
    #[error(
        "vulkan: cannot load the Vulkan loader library (libvulkan.so.1): {0}. Install it \
         (Debian / Raspberry Pi OS: `sudo apt-get install libvulkan1` plus a driver such as the \
         NVIDIA driver or mesa-vulkan-drivers), or use `--backend cpu`"
    )]
    NoLoader(String),
    #[error("vulkan: no usable device: {0}. `pigpu run --list-devices` shows what exists and why each one was skipped")]
    NoDevice(String),
    #[error("vulkan: {0} is not supported; use another device (`--device`) or `--backend cpu`")]
    Unsupported(String),
    #[error(
        "vulkan: out of device memory allocating {what} ({mib:.1} MiB); use a smaller `--ctx`, \
         a smaller model, or a device with more memory"
    )]
    OutOfDeviceMemory { what: String, mib: f64 },
    #[error(
        "vulkan: the device was lost (driver crash, reset or a GPU hang); check `dmesg` and \
         `pigpu doctor`, then try again"
    )]
    DeviceLost,
    #[error("vulkan: {what} timed out after {secs} s (the GPU stopped responding)")]
    Timeout { what: &'static str, secs: u64 },
    #[error("vulkan: {what} failed: {result}")]
    Other {
        what: &'static str,
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
