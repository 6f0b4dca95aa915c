//! The NVIDIA driver as the running kernel has it, independent of where its files live: loaded
//! or not, its version, and which GPUs it has initialised (`/proc/driver/nvidia/gpus/<bdf>`
//! appears only once the driver has started a GPU, firmware and all). Checks that find a file
//! missing ask this first: a driver that is up needs nothing more from `/lib/modules` or
//! `/lib/firmware`.

use serde::Serialize;

use crate::sys::{kmod, Root};

/// The NVIDIA kernel driver as the running kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Nvidia {
    /// `nvidia` is in `/proc/modules` (or `/sys/module/nvidia` exists).
    pub loaded: bool,
    /// The loaded driver's version (`/sys/module/nvidia/version`, else `/proc/driver/nvidia/version`).
    pub version: Option<String>,
    /// PCI addresses under `/proc/driver/nvidia/gpus`: GPUs the driver has initialised.
    pub initialised: Vec<String>,
}

impl Nvidia {
    /// The driver is loaded and has started at least one GPU.
    pub fn working(&self) -> bool {
        self.loaded && !self.initialised.is_empty()
    }
}

/// The version number in `/proc/driver/nvidia/version`'s first line.
pub fn proc_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    first
        .split_whitespace()
        .find(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_digit())
                && w.contains('.')
                && w.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
}

/// Reads the driver's state under `root`; missing files mean not loaded.
pub fn probe(root: &Root) -> Nvidia {
    // /proc/modules when it can be read (a module that is not loaded may leave nothing else);
    // /sys/module/nvidia otherwise.
    let in_proc = kmod::loaded_modules(root)
        .ok()
        .flatten()
        .map(|l| l.iter().any(|m| m.name == "nvidia"));
    let version = kmod::loaded_version(root, "nvidia").or_else(|| {
        root.read_optional("/proc/driver/nvidia/version")
            .ok()
            .flatten()
            .as_deref()
            .and_then(proc_version)
    });
    let mut initialised: Vec<String> = root
        .list_dir("/proc/driver/nvidia/gpus")
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.contains(':'))
        .collect();
    initialised.sort();
    Nvidia {
        loaded: in_proc.unwrap_or_else(|| root.exists_resolved("/sys/module/nvidia")),
        version,
        initialised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_working() {
        assert_eq!(
            proc_version("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build  (dvs-builder@U22)  Tue Sep 23 09:46:53 UTC 2025\nGCC version:  gcc version 12.2.0"),
            Some("580.95.05".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert!(!probe(&root).working());
        std::fs::create_dir_all(dir.path().join("proc/driver/nvidia/gpus/0000:01:00.0")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/module/nvidia")).unwrap();
        std::fs::write(dir.path().join("sys/module/nvidia/version"), "580.159.04\n").unwrap();
        let n = probe(&root);
        assert!(n.working(), "{n:?}");
        assert_eq!(n.version.as_deref(), Some("580.159.04"));
    }
}
