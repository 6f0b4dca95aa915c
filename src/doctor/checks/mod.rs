//! The system checks, one file per area, in the order the report shows them: views over the
//! [`crate::platform::Platform`] model, plus the fix texts several of them share.

mod boot;
mod devnodes;
mod driver;
mod kernel;
mod kernel_log;
mod pcie;
mod platform;
mod power;
mod vulkan;

use super::{Check, Patient};
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

/// NVIDIA GPUs on the PCI bus (empty when enumeration failed; the pcie check reports that).
pub fn nvidia_gpus(host: &Patient) -> Vec<PciDevice> {
    host.platform().nvidia_gpus().into_iter().cloned().collect()
}

/// The system path of a library by file name (`libvulkan.so.1`), if installed.
pub fn find_library(host: &Patient, name: &str) -> Option<String> {
    crate::platform::vulkan::find_library(&host.root, name)
}

/// Files in the library directories whose names start with `prefix`, as system paths.
pub fn library_files(host: &Patient, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in crate::platform::vulkan::LIB_DIRS {
        for n in host.root.list_dir(d).unwrap_or_default() {
            if n.starts_with(prefix) {
                out.push(format!("{d}/{n}"));
            }
        }
    }
    out
}

/// Whether anything says this system is meant to run an NVIDIA GPU.
pub fn nvidia_expected(host: &Patient) -> bool {
    host.platform().nvidia_expected()
}

/// Whether Pi-only fixes (config.txt edits, `pigpu setup`) apply here.
pub fn on_pi(host: &Patient) -> bool {
    host.platform().is_raspberry_pi()
}

/// `sudo pigpu setup` on a Pi 5 family board; elsewhere what to do instead (`other`).
pub fn setup_or(host: &Patient, why: &str, other: &str) -> String {
    if host.platform().is_pi5_family() {
        format!("{why}: {}", super::fixes::SETUP)
    } else {
        other.to_string()
    }
}
