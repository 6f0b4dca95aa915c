//! What the checks may look at: the [`Platform`] model (board, config.txt, kernel, PCI, NVIDIA
//! driver, Vulkan) that setup's probe reads too, files under its [`Root`], kernel modules
//! ([`crate::sys::kmod`]) and the kernel log. Under a fake root every fact comes from files
//! inside it, so nothing about the machine running the tests leaks in.

use std::cell::OnceCell;
use std::path::Path;

use crate::platform::vulkan::VulkanEnv;
use crate::platform::{PageSize, Platform};
use crate::sys::pci::{PciDevice, PciSource};
use crate::sys::Root;

/// How much of the end of a kernel log file doctor reads.
const KERNEL_LOG_TAIL: u64 = 4 << 20;

/// A Vulkan physical device as doctor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulkanDevice {
    /// The device name the driver reports.
    pub name: String,
    /// "discrete", "integrated", "cpu", "virtual", "other".
    pub kind: String,
    /// Why pigpu's engine could not use it, if it cannot.
    pub problem: Option<String>,
}

/// The seam for a real Vulkan device listing (the Vulkan engine's `list_devices`): `cmd::doctor`
/// plugs it in on the live system; fake roots leave it empty and the vulkan check falls back to
/// the loader and ICD files.
pub type VulkanLister = fn() -> Result<Vec<VulkanDevice>, String>;

/// The system doctor examines (a patient, not a `Host`: that name is provision's trait for the
/// effects setup performs).
pub struct Patient {
    /// The root examined (`/` on the live system).
    pub root: Root,
    /// Where PCI devices are read from (udev on the live system, sysfs files under a fake root).
    pub pci_source: PciSource,
    /// Lists real Vulkan devices; `None` under a fake root.
    pub vulkan_lister: Option<VulkanLister>,
    /// The Vulkan loader's variables as the command layer resolved them (the live system's
    /// driver manifests may be chosen by them); empty by default.
    pub vulkan_env: VulkanEnv,
    platform: OnceCell<Platform>,
}

impl Patient {
    /// A system under `dir` (tests, mounted images).
    pub fn fake(dir: impl AsRef<Path>) -> Patient {
        Patient::new(Root::new(dir.as_ref()))
    }
    /// A patient at `root`, PCI read the way that root needs, no Vulkan lister.
    pub fn new(root: Root) -> Patient {
        Patient {
            pci_source: PciSource::for_root(&root),
            root,
            vulkan_lister: None,
            vulkan_env: VulkanEnv::default(),
            platform: OnceCell::new(),
        }
    }
    /// Whether the root is the running system.
    pub fn is_live(&self) -> bool {
        self.root.is_live()
    }

    /// The platform model (probed once, shared by the checks).
    pub fn platform(&self) -> &Platform {
        self.platform.get_or_init(|| {
            Platform::probe(&self.root, self.pci_source.clone(), self.vulkan_env.clone())
        })
    }

    /// All PCI functions (enumerated once, shared by the checks).
    pub fn pci_devices(&self) -> Result<&[PciDevice], String> {
        self.platform().pci_devices()
    }

    /// A file's text, trimmed; `None` when missing or unreadable. Symlinks are followed inside
    /// the root (`/proc/device-tree` is one).
    pub fn read(&self, abs: &str) -> Option<String> {
        let path = self.root.resolve(abs)?;
        self.root
            .read_optional(path)
            .ok()
            .flatten()
            .map(|s| s.trim().to_string())
    }

    /// The running kernel's release (`uname -r`).
    pub fn kernel_release(&self) -> Option<String> {
        self.platform().running_kernel.clone()
    }

    /// The running kernel's page size and where that came from (the platform's one rule).
    pub fn page_size(&self) -> Option<PageSize> {
        self.platform().page_size()
    }

    /// The kernel log and where it came from. Live: `dmesg`, else `journalctl -k -b`, else
    /// /var/log/kern.log. Fake root: `ROOT/var/log/kern.log` or `ROOT/var/log/dmesg`.
    pub fn kernel_log(&self) -> Result<(String, String), String> {
        let mut tried = Vec::new();
        if self.is_live() {
            for (cmd, args) in [
                ("dmesg", &[][..]),
                ("journalctl", &["-k", "-b", "-q", "--no-pager"][..]),
            ] {
                match std::process::Command::new(cmd)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                {
                    Ok(o) if o.status.success() && !o.stdout.is_empty() => {
                        return Ok((
                            String::from_utf8_lossy(&o.stdout).into_owned(),
                            format!("{cmd} {}", args.join(" ")).trim().to_string(),
                        ))
                    }
                    Ok(o) => tried.push(format!(
                        "`{cmd}`: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => tried.push(format!("`{cmd}`: {e}")),
                }
            }
        }
        for f in ["/var/log/kern.log", "/var/log/dmesg"] {
            // Only the recent end: kern.log can hold months of boots. Read inside the root (a
            // link to a host file is looked up in the root), regular files only.
            match self.root.read_tail(f, KERNEL_LOG_TAIL) {
                Ok(Some(b)) => {
                    let mut t = String::from_utf8_lossy(&b).into_owned();
                    if b.len() as u64 == KERNEL_LOG_TAIL {
                        // The cut may fall inside a line: start at the next whole one.
                        if let Some(nl) = t.find('\n') {
                            t.drain(..=nl);
                        }
                    }
                    return Ok((t, self.root.path(f).display().to_string()));
                }
                Ok(None) => tried.push(format!("{f}: missing")),
                Err(e) => tried.push(format!("{f}: {e}")),
            }
        }
        Err(tried.join("; "))
    }
}
