//! One model of the machine that doctor and setup both read: the board, `config.txt` with its
//! sections resolved once, the running kernel and its page size, PCI devices, the NVIDIA
//! driver's state and Vulkan's drivers (with whether each one loads). Doctor's checks and
//! setup's probe are views over it, so they agree by construction. Read-only, through a
//! [`Root`], so a test's temp dir or a mounted image is examined exactly like `/`.

pub mod board;
pub mod config_txt;
pub mod elf;
pub mod kernel;
pub mod nvidia;
pub mod vulkan;

use std::cell::OnceCell;

pub use board::Board;
pub use config_txt::ConfigTxt;
pub use kernel::PageSize;

use crate::sys::pci::{self, PciDevice, PciSource};
use crate::sys::Root;

/// The machine under a root. Cheap facts are read at once; PCI and Vulkan on first use.
pub struct Platform {
    /// The root every path is read under (`/` on the live system).
    pub root: Root,
    /// `/proc/device-tree/model`, trimmed.
    pub model: Option<String>,
    /// Which board the device-tree model names.
    pub board: Board,
    /// The config.txt that exists, parsed for this board.
    pub config: Option<ConfigTxt>,
    /// Its text, for setup's editing.
    pub config_text: Option<String>,
    /// `uname -r`: `ROOT/proc/sys/kernel/osrelease` (on the live system `uname(2)` without /proc).
    pub running_kernel: Option<String>,
    /// The NVIDIA kernel driver's state.
    pub nvidia: nvidia::Nvidia,
    pci_source: PciSource,
    /// The loader's variables, resolved by the command layer (used on the live system only).
    vulkan_env: vulkan::VulkanEnv,
    pci: OnceCell<Result<Vec<PciDevice>, String>>,
    vulkan: OnceCell<vulkan::Vulkan>,
}

impl Platform {
    /// The machine under `root`: PCI through `pci_source`, Vulkan's drivers as the loader would
    /// find them with `vulkan_env` (see [`vulkan::VulkanEnv`]).
    pub fn probe(root: &Root, pci_source: PciSource, vulkan_env: vulkan::VulkanEnv) -> Platform {
        let read = |p: &str| {
            root.resolve(p)
                .and_then(|path| root.read_optional(path).ok().flatten())
        };
        let model = read("/proc/device-tree/model")
            .map(|m| m.trim_end_matches('\0').trim().to_string())
            .filter(|m| !m.is_empty());
        let board = Board::detect(
            model.as_deref(),
            read("/proc/device-tree/compatible").as_deref(),
        );
        let (config, config_text) = match config_txt::CONFIG_PATHS
            .iter()
            .find_map(|p| read(p).map(|t| (p, t)))
        {
            Some((p, t)) => (Some(ConfigTxt::new(p, &t, board)), Some(t)),
            None => (None, None),
        };
        let mut running_kernel = read("/proc/sys/kernel/osrelease")
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty() && !r.contains('\0'));
        if running_kernel.is_none() && root.is_live() {
            running_kernel = nix::sys::utsname::uname()
                .ok()
                .map(|u| u.release().to_string_lossy().into_owned());
        }
        Platform {
            root: root.clone(),
            model,
            board,
            config,
            config_text,
            running_kernel,
            nvidia: nvidia::probe(root),
            pci_source,
            vulkan_env,
            pci: OnceCell::new(),
            vulkan: OnceCell::new(),
        }
    }

    /// A Raspberry Pi of any model, or an image with a Pi boot partition (`config.txt`) and no
    /// device tree to say otherwise. Pi-only fixes (`config.txt`, `pigpu setup`) are offered only here.
    pub fn is_raspberry_pi(&self) -> bool {
        match self.board {
            Board::Pi5 | Board::Pi500 | Board::Cm5 => true,
            Board::OtherPi => self
                .model
                .as_deref()
                .is_none_or(|m| m.starts_with("Raspberry Pi")),
            Board::Unknown => self.config.is_some() && !self.root.is_live(),
        }
    }

    /// A board `pigpu setup` provisions (Pi 5, Pi 500, CM5).
    pub fn is_pi5_family(&self) -> bool {
        self.is_raspberry_pi() && self.board.is_pi5_family()
    }

    /// The running kernel's page size: `sysconf` on the live system, else the one rule of
    /// [`kernel::page_size`] over `/boot/config-<rel>` and the release name.
    pub fn page_size(&self) -> Option<PageSize> {
        if self.root.is_live() {
            // SAFETY: sysconf has no preconditions; it only reads a constant of the running kernel.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if p > 0 {
                return Some(PageSize {
                    bytes: p as u32,
                    source: format!("getconf PAGESIZE = {p}"),
                });
            }
        }
        let rel = self.running_kernel.as_deref()?;
        let path = format!("/boot/config-{rel}");
        let text = self.root.read_optional(&path).ok().flatten();
        kernel::page_size(text.as_deref().map(|t| (path.as_str(), t)), rel)
    }

    /// Every PCI function (enumerated once).
    pub fn pci_devices(&self) -> Result<&[PciDevice], String> {
        self.pci
            .get_or_init(|| pci::devices(&self.pci_source).map_err(|e| e.to_string()))
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }

    /// NVIDIA GPUs on the bus (empty when enumeration failed).
    pub fn nvidia_gpus(&self) -> Vec<&PciDevice> {
        self.pci_devices()
            .map(|d| d.iter().filter(|d| d.is_nvidia_gpu()).collect())
            .unwrap_or_default()
    }

    /// Vulkan's loader and drivers (probed once).
    pub fn vulkan(&self) -> &vulkan::Vulkan {
        self.vulkan
            .get_or_init(|| vulkan::probe(&self.root, &self.vulkan_env))
    }

    /// Whether anything says this system is meant to run an NVIDIA GPU (a GPU on the bus, a
    /// module installed or loaded): decides how loudly NVIDIA-specific problems are reported.
    pub fn nvidia_expected(&self) -> bool {
        !self.nvidia_gpus().is_empty()
            || self.nvidia.loaded
            || self.root.exists_resolved("/proc/driver/nvidia")
            || self.running_kernel.as_deref().is_some_and(|rel| {
                !crate::sys::kmod::module_files(&self.root, rel, "nvidia").is_empty()
            })
    }
}

/// The Vulkan cause line for the live system, for `run --list-devices` and the engine's "no
/// device" error: `None` when the driver files look loadable.
pub fn vulkan_no_device_cause(env: &vulkan::VulkanEnv) -> Option<String> {
    vulkan::no_device_cause(&vulkan::probe(&Root::live(), env))
}
