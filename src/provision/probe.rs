//! The read-only look at the system before anything is planned: board, OS, kernels and their
//! page size and build trees, what `config.txt` boots, installed packages, NVIDIA devices,
//! loaded modules, free space, and what pigpu (or anyone) installed before. Everything is read
//! through a [`Root`], so a test's temp dir or a mounted image is probed exactly like `/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::bootconfig::{self, Board, Effective};
use super::files;
use super::kapi;
use super::manifest::Manifest;
use super::state::{self, State};
use crate::platform::vulkan::VulkanEnv;
use crate::platform::Platform;
use crate::sys::{kmod, pci, Root};

/// One kernel found under `/lib/modules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// The release (`uname -r` form), the directory name under `/lib/modules`.
    pub release: String,
    /// Page size in bytes from the kernel's config (or its release suffix), when known.
    pub page_size: Option<u32>,
    /// CPU architecture from the kernel's config (`aarch64`, `x86_64`).
    pub arch: Option<String>,
    /// The build (output) tree (`/lib/modules/<rel>/build`) as a host path, when it holds a
    /// Makefile: `.config`, generated headers, `Module.symvers`, the arch half of split headers.
    pub build_tree: Option<PathBuf>,
    /// The source tree, found as NVIDIA's Makefile and the kernel's packaging lay it out:
    /// `/lib/modules/<rel>/source`, else `<build>/source`, else the build tree itself. With
    /// split headers (Debian `-amd64` + `-common`, Pi OS `-rpi-v8` + `-common-rpi`) it is the
    /// `-common` half, which holds `include/linux/*.h`.
    pub source_tree: Option<PathBuf>,
    /// What the source tree's headers say about kernel API changes the driver cares about.
    pub api: Vec<kapi::Check>,
}

/// An NVIDIA GPU on the PCI bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// PCI address (`0000:01:00.0`).
    pub address: String,
    /// `vendor:device` in hex (`10de:2684`).
    pub id: String,
    /// The bound kernel driver, if any.
    pub driver: Option<String>,
    /// Turing or newer (has a GSP): the open modules can drive it.
    pub supported: bool,
}

/// Everything setup knows about the system before planning.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The root probed (`/` on the live system).
    pub root: PathBuf,
    /// Whether the root is the running system.
    pub live: bool,
    /// `/proc/device-tree/model`, trimmed.
    pub model: Option<String>,
    /// The board the model names.
    pub board: Board,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os: Option<String>,
    /// The CPU architecture pigpu runs on (Rust's name: `aarch64`, `x86_64`).
    pub host_arch: String,
    /// From `ROOT/proc/sys/kernel/osrelease`; `None` for an image that is not running.
    pub running_kernel: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: Option<String>,
    /// Every kernel with a `/lib/modules` directory.
    pub kernels: Vec<Kernel>,
    /// The kernel release to build for, and why it was chosen.
    pub target: Option<String>,
    /// Why `target` was chosen, in words.
    pub target_reason: String,
    /// `config.txt` as a system path, and its text.
    pub config_path: Option<String>,
    /// Its text, when it exists.
    pub config_text: Option<String>,
    /// What `config.txt` says for this board's settings that setup cares about.
    pub boot: Effective,
    /// The kernel image that boots (the `kernel=` setting, else the board's default).
    pub kernel_image: String,
    /// `kernel8.img` (the 4K-page kernel image) sits beside `config.txt`.
    pub kernel8_present: bool,
    /// `ROOT/var/lib/dpkg/status` as package → (installed, held); `None` when there is none.
    pub packages: Option<BTreeMap<String, (bool, bool)>>,
    /// NVIDIA GPUs on the PCI bus.
    pub gpus: Vec<Gpu>,
    /// Why the PCI bus could not be listed, when it could not.
    pub pci_error: Option<String>,
    /// Loaded module names (`ROOT/proc/modules`), `None` when unknown.
    pub loaded: Option<Vec<String>>,
    /// Free space under the root, in MiB.
    pub free_mib: Option<u64>,
    /// Contents of the files pigpu writes, by system path (`None`: absent).
    pub owned_files: BTreeMap<String, Option<String>>,
    /// Whether each of the userspace installer's files is present.
    pub userspace_files: Vec<(String, bool)>,
    /// `ROOT/var/lib/dkms/<module>/<version>` exists.
    pub dkms_registered: bool,
    /// NVIDIA module files for the target that pigpu did not install.
    pub foreign_modules: Vec<String>,
    /// Module files pigpu installed for the target are all present and unchanged.
    pub modules_intact: bool,
    /// The `video` group's gid (device-node ownership).
    pub video_gid: u32,
    /// The uid setup runs as is 0.
    pub as_root: bool,
    /// pigpu's state file: what earlier runs did and chose.
    pub state: State,
    /// Why the state file could not be read, when it could not.
    pub state_error: Option<String>,
}

/// The one page-size rule and kernel-config reader live in [`crate::platform::kernel`].
pub use crate::platform::kernel::{config_facts, page_size_from_release};

/// Resolves a symlink found inside the root, mapping absolute targets into the root (an image's
/// `build` link names `/usr/src/…` of the image, not of the host).
fn resolve_in_root(root: &Root, abs: &str) -> PathBuf {
    let mut path = root.path(abs);
    for _ in 0..16 {
        match std::fs::read_link(&path) {
            // A link whose target maps onto itself (a test root linking to the host's headers
            // by their host path) ends the walk; the OS follows it.
            Ok(target) if target.is_absolute() && root.path(&target) == path => break,
            Ok(target) if target.is_absolute() => path = root.path(&target),
            Ok(target) => {
                path = path.parent().map(|p| p.join(&target)).unwrap_or(target);
            }
            Err(_) => break,
        }
    }
    path
}

/// What `/lib/modules/<release>` of `root` holds: page size, architecture, trees, API.
pub fn kernel_facts(root: &Root, release: &str) -> Kernel {
    let build = resolve_in_root(root, &format!("/lib/modules/{release}/build"));
    let build_tree = build.join("Makefile").is_file().then_some(build.clone());
    let source_tree = build_tree.as_ref().map(|b| {
        [
            resolve_in_root(root, &format!("/lib/modules/{release}/source")),
            b.join("source"),
        ]
        .into_iter()
        .find(|s| s.join("Makefile").is_file())
        .unwrap_or_else(|| b.clone())
    });
    let api = source_tree.as_deref().map(kapi::probe).unwrap_or_default();
    let config = std::fs::read_to_string(build.join(".config"))
        .ok()
        .or_else(|| {
            root.read_optional(format!("/boot/config-{release}"))
                .ok()
                .flatten()
        });
    let (page, arch) = config.as_deref().map(config_facts).unwrap_or((None, None));
    Kernel {
        release: release.to_string(),
        page_size: page.or_else(|| page_size_from_release(release)),
        arch,
        build_tree,
        source_tree,
        api,
    }
}

/// Parses `/var/lib/dpkg/status` into package → (installed, held).
fn parse_dpkg_status(text: &str) -> BTreeMap<String, (bool, bool)> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let mut name = None;
        let mut status = "";
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status:") {
                status = v.trim();
            }
        }
        if let Some(n) = name {
            let words: Vec<&str> = status.split_whitespace().collect();
            let installed = words.last() == Some(&"installed");
            let held = words.first() == Some(&"hold");
            out.insert(n, (installed, held));
        }
    }
    out
}

/// Orders kernel releases by their numeric parts (`6.12.47+rpt` > `6.12.9`).
fn release_key(r: &str) -> Vec<u64> {
    r.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Probes `root`. `kernel_release` pins the target kernel; otherwise the newest 4K-page kernel
/// under `/lib/modules` is chosen (the running one when it qualifies).
pub fn probe(root: &Root, manifest: &Manifest, kernel_release: Option<&str>) -> Probe {
    // Board, config.txt and GPUs come from the platform model doctor reads too.
    // Setup reads no Vulkan facts, so the loader's variables do not matter here.
    let platform = Platform::probe(root, pci::PciSource::for_root(root), VulkanEnv::default());
    let board = platform.board;
    let running_kernel = read_trimmed(root, "/proc/sys/kernel/osrelease");

    let releases = root.list_dir("/lib/modules").unwrap_or_default();
    let kernels: Vec<Kernel> = releases.iter().map(|r| kernel_facts(root, r)).collect();
    let (target, target_reason) =
        choose_target(&kernels, running_kernel.as_deref(), kernel_release);

    let config_path = platform.config.as_ref().map(|c| c.path.clone());
    let config_text = platform.config_text.clone();
    let boot = bootconfig::effective(config_text.as_deref().unwrap_or(""), board);
    let kernel_image = boot.kernel_image(board);
    let kernel8_present = kernel8_beside(root, config_path.as_deref());

    let (gpus, pci_error) = nvidia_gpus(&platform);

    let (state, state_error) = load_state(root);
    let (foreign_modules, modules_intact) = match &target {
        Some(t) => target_modules(root, manifest, &state, t),
        None => (Vec::new(), false),
    };

    Probe {
        root: root.dir().to_path_buf(),
        live: root.is_live(),
        model: platform.model.clone(),
        board,
        os: os_name(root),
        host_arch: std::env::consts::ARCH.to_string(),
        running_kernel,
        boot_id: read_trimmed(root, "/proc/sys/kernel/random/boot_id"),
        kernels,
        target,
        target_reason,
        config_path,
        config_text,
        boot,
        kernel_image,
        kernel8_present,
        packages: dpkg_packages(root),
        gpus,
        pci_error,
        loaded: loaded_modules(root),
        free_mib: free_mib(root),
        owned_files: owned_files(root, manifest),
        userspace_files: userspace_files(root, manifest),
        dkms_registered: root.exists(format!("/var/lib/dkms/nvidia/{}", manifest.driver)),
        foreign_modules,
        modules_intact,
        video_gid: files::video_gid(root.read_optional("/etc/group").ok().flatten().as_deref()),
        as_root: nix::unistd::geteuid().is_root(),
        state,
        state_error,
    }
}

/// The file at `path` under `root`, trimmed; `None` when it is absent, unreadable or empty.
fn read_trimmed(root: &Root, path: &str) -> Option<String> {
    root.read_optional(path)
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `PRETTY_NAME` from `ROOT/etc/os-release`, unquoted.
fn os_name(root: &Root) -> Option<String> {
    let text = root.read_optional("/etc/os-release").ok().flatten()?;
    text.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// The kernel release to build for, and why, in words: `pinned` when given, else the running
/// kernel when it has 4K pages, else the newest 4K-page kernel of `kernels`.
fn choose_target(
    kernels: &[Kernel],
    running: Option<&str>,
    pinned: Option<&str>,
) -> (Option<String>, String) {
    if let Some(r) = pinned {
        return (
            Some(r.to_string()),
            "given with --kernel-release".to_string(),
        );
    }
    let four_k: Vec<&Kernel> = kernels
        .iter()
        .filter(|k| k.page_size == Some(4096))
        .collect();
    if let Some(k) = four_k.iter().find(|k| Some(k.release.as_str()) == running) {
        (
            Some(k.release.clone()),
            "the running kernel (4K pages)".to_string(),
        )
    } else if let Some(k) = four_k.iter().max_by_key(|k| release_key(&k.release)) {
        (
            Some(k.release.clone()),
            "the newest 4K-page kernel under /lib/modules".to_string(),
        )
    } else {
        (None, "no 4K-page kernel under /lib/modules".to_string())
    }
}

/// Whether `kernel8.img` (the 4K-page kernel image) sits beside `config.txt` (a system path).
fn kernel8_beside(root: &Root, config_path: Option<&str>) -> bool {
    config_path.is_some_and(|c| {
        let dir = Path::new(c).parent().unwrap_or(Path::new("/"));
        root.path(dir.join("kernel8.img")).is_file()
    })
}

/// `ROOT/var/lib/dpkg/status` as package → (installed, held); `None` when there is none.
fn dpkg_packages(root: &Root) -> Option<BTreeMap<String, (bool, bool)>> {
    root.read_optional("/var/lib/dpkg/status")
        .ok()
        .flatten()
        .map(|t| parse_dpkg_status(&t))
}

/// The NVIDIA GPUs on the platform's PCI bus, or why the bus could not be listed.
fn nvidia_gpus(platform: &Platform) -> (Vec<Gpu>, Option<String>) {
    match platform.pci_devices() {
        Ok(list) => (
            list.iter()
                .filter(|d| d.is_nvidia_gpu())
                .map(|d| Gpu {
                    address: d.address.clone(),
                    id: d.id(),
                    driver: d.driver.clone(),
                    supported: d.has_gsp(),
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e)),
    }
}

/// The names of the loaded modules (`ROOT/proc/modules`), `None` when unknown.
fn loaded_modules(root: &Root) -> Option<Vec<String>> {
    kmod::loaded_modules(root)
        .ok()
        .flatten()
        .map(|l| l.into_iter().map(|m| m.name).collect())
}

/// Free space under the root, in MiB, `None` when it cannot be asked.
fn free_mib(root: &Root) -> Option<u64> {
    nix::sys::statvfs::statvfs(root.dir())
        .ok()
        // The field types are narrower on 32-bit systems.
        .map(|s| {
            #[allow(clippy::unnecessary_cast)]
            let bytes = s.blocks_available() as u64 * s.fragment_size() as u64;
            bytes / (1 << 20)
        })
}

/// pigpu's state file, or the default state and why the file could not be read.
fn load_state(root: &Root) -> (State, Option<String>) {
    match state::load(root) {
        Ok(s) => (s, None),
        Err(e) => (State::default(), Some(e.to_string())),
    }
}

/// The contents of the files pigpu writes, by system path (`None`: absent).
fn owned_files(root: &Root, manifest: &Manifest) -> BTreeMap<String, Option<String>> {
    files::owned_paths(manifest)
        .into_iter()
        .map(|p| {
            let content = root.read_optional(&p).ok().flatten();
            (p, content)
        })
        .collect()
}

/// Whether each of the userspace installer's files is present.
fn userspace_files(root: &Root, manifest: &Manifest) -> Vec<(String, bool)> {
    manifest
        .userspace
        .installs
        .iter()
        .map(|p| (p.clone(), root.exists(p)))
        .collect()
}

/// The NVIDIA module files for kernel `target` that pigpu did not install, and whether the
/// ones it did install are all present and unchanged.
fn target_modules(
    root: &Root,
    manifest: &Manifest,
    state: &State,
    target: &str,
) -> (Vec<String>, bool) {
    let ours = state.modules_for(&manifest.driver, target);
    let foreign = kmod::module_files(root, target, "nvidia")
        .into_iter()
        .map(|f| f.display().to_string())
        .filter(|f| !ours.contains(f))
        .collect();
    let intact = !ours.is_empty() && state.files_unchanged(root, &ours);
    (foreign, intact)
}

impl Probe {
    /// The kernel with release `release`, if installed.
    pub fn kernel(&self, release: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.release == release)
    }
    /// Whether dpkg lists `pkg` as installed.
    pub fn installed(&self, pkg: &str) -> bool {
        self.packages
            .as_ref()
            .is_some_and(|p| p.get(pkg).is_some_and(|(i, _)| *i))
    }
    /// Whether `pkg` is on hold (`apt-mark hold`).
    pub fn held(&self, pkg: &str) -> bool {
        self.packages
            .as_ref()
            .is_some_and(|p| p.get(pkg).is_some_and(|(_, h)| *h))
    }
    /// Whether `module` is loaded (dashes and underscores are the same).
    pub fn is_loaded(&self, module: &str) -> bool {
        let name = module.replace('-', "_");
        self.loaded.as_ref().is_some_and(|l| l.contains(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_and_kernel_configs() {
        let st = "Package: build-essential\nStatus: install ok installed\nVersion: 12.9\n\nPackage: linux-image-rpi-v8\nStatus: hold ok installed\n\nPackage: gone\nStatus: deinstall ok config-files\n";
        let p = parse_dpkg_status(st);
        assert_eq!(p["build-essential"], (true, false));
        assert_eq!(p["linux-image-rpi-v8"], (true, true));
        assert_eq!(p["gone"], (false, false));
        assert!(release_key("6.12.47+rpt-rpi-v8") > release_key("6.12.9-rpi-v8"));
    }
}
