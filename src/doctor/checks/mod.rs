//! The system checks, one file per area, in the order the report shows them, plus the facts
//! several of them need (which board this is, which GPUs are NVIDIA, where libraries live).

pub mod boot;
pub mod devnodes;
pub mod driver;
pub mod kernel;
pub mod kernel_log;
pub mod pcie;
pub mod platform;
pub mod power;
pub mod vulkan;

use super::{Check, Host};
use crate::sys::pci::PciDevice;

/// Every check, by stable id.
pub fn all() -> Vec<Check> {
    vec![
        Check {
            id: "platform",
            run: platform::run,
        },
        Check {
            id: "kernel",
            run: kernel::run,
        },
        Check {
            id: "boot-config",
            run: boot::run,
        },
        Check {
            id: "pcie",
            run: pcie::run,
        },
        Check {
            id: "driver",
            run: driver::run,
        },
        Check {
            id: "device-nodes",
            run: devnodes::run,
        },
        Check {
            id: "kernel-log",
            run: kernel_log::run,
        },
        Check {
            id: "vulkan",
            run: vulkan::run,
        },
        Check {
            id: "power",
            run: power::run,
        },
    ]
}

/// The check ids, for `--check` and the docs.
pub fn ids() -> Vec<&'static str> {
    all().iter().map(|c| c.id).collect()
}

/// Which board this is, from the device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Board {
    Pi5,
    Cm5,
    Pi500,
    /// Pi 4 / CM4 / Pi 400 (BCM2711): not supported for NVIDIA GPUs.
    Pi4,
    /// Another device-tree machine (the model string).
    Other(String),
    /// No device tree: not a Raspberry Pi (an x86 PC, a container).
    Unknown,
}

impl Board {
    pub fn is_pi5_family(&self) -> bool {
        matches!(self, Board::Pi5 | Board::Cm5 | Board::Pi500)
    }
}

/// The board and the model string it was read from.
pub fn board(host: &Host) -> (Board, Option<String>) {
    let model = host
        .read("/proc/device-tree/model")
        .map(|m| m.trim_end_matches('\0').trim().to_string());
    let compatible = host
        .read("/proc/device-tree/compatible")
        .unwrap_or_default();
    let compat: Vec<&str> = compatible.split('\0').map(str::trim).collect();
    let m = model.clone().unwrap_or_default();
    let b = if m.contains("Compute Module 5") || compat.contains(&"raspberrypi,5-compute-module") {
        Board::Cm5
    } else if m.contains("Raspberry Pi 500")
        || compat.iter().any(|c| c.starts_with("raspberrypi,500"))
    {
        Board::Pi500
    } else if m.contains("Raspberry Pi 5")
        || compat.contains(&"raspberrypi,5-model-b")
        || compat.contains(&"brcm,bcm2712")
    {
        Board::Pi5
    } else if compat.contains(&"brcm,bcm2711")
        || m.contains("Raspberry Pi 4")
        || m.contains("Compute Module 4")
        || m.contains("Raspberry Pi 400")
    {
        Board::Pi4
    } else if !m.is_empty() {
        Board::Other(m.clone())
    } else {
        Board::Unknown
    };
    (b, model)
}

/// NVIDIA GPUs on the PCI bus (empty when enumeration failed; the pcie check reports that).
pub fn nvidia_gpus(host: &Host) -> Vec<PciDevice> {
    host.pci_devices()
        .map(|d| d.iter().filter(|d| d.is_nvidia_gpu()).cloned().collect())
        .unwrap_or_default()
}

/// Directories where shared libraries live on Debian / Pi OS (and a few other layouts).
pub const LIB_DIRS: &[&str] = &[
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
];

/// The system path of a library by file name (`libvulkan.so.1`), if installed.
pub fn find_library(host: &Host, name: &str) -> Option<String> {
    LIB_DIRS
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| host.root.exists_resolved(p))
}

/// Files in the library directories whose names start with `prefix`, as system paths.
pub fn library_files(host: &Host, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in LIB_DIRS {
        for n in host.root.list_dir(d).unwrap_or_default() {
            if n.starts_with(prefix) {
                out.push(format!("{d}/{n}"));
            }
        }
    }
    out
}

/// Whether anything says this system is meant to run an NVIDIA GPU (a GPU on the bus, a
/// module installed or loaded): decides how loudly NVIDIA-specific problems are reported.
pub fn nvidia_expected(host: &Host) -> bool {
    !nvidia_gpus(host).is_empty()
        || host.root.exists_resolved("/proc/driver/nvidia")
        || host.root.exists_resolved("/sys/module/nvidia")
        || host.kernel_release().is_some_and(|rel| {
            !crate::sys::kmod::module_files(&host.root, &rel, "nvidia").is_empty()
        })
}
