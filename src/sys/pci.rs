//! PCI devices as doctor and setup need them: ids, class, bound driver, which host controller
//! and root port they hang off, PCIe link speed/width (current vs maximum), BARs and AER counters.
//! On the live system the devices come from udev (the `udev` crate, so `umockdev-run` can stand
//! in for real hardware in tests); under a fake root they are read from `ROOT/sys/bus/pci/devices`.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Root;

/// NVIDIA's PCI vendor id.
const VENDOR_NVIDIA: u16 = 0x10de;

/// `IORESOURCE_IO` / `IORESOURCE_MEM` / `IORESOURCE_PREFETCH` / `IORESOURCE_MEM_64` /
/// `IORESOURCE_UNSET` from the kernel's `include/linux/ioport.h` (the flags column of sysfs `resource`).
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;
const IORESOURCE_UNSET: u64 = 0x2000_0000;

/// Why the PCI devices could not be listed.
#[derive(Debug, Error)]
pub enum PciError {
    /// udev could not enumerate the `pci` subsystem.
    #[error("pci: udev enumeration of subsystem 'pci' failed: {0}")]
    Udev(#[source] std::io::Error),
    /// Listing or reading `/sys/bus/pci/devices` (inside a root) failed.
    #[error("pci: cannot list {path}: {source}")]
    Sysfs {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where device information comes from.
#[derive(Debug, Clone)]
pub enum PciSource {
    /// libudev (the live system, or whatever `umockdev-run` provides).
    Udev,
    /// A sysfs tree under a root directory (`ROOT/sys/bus/pci/devices/*`).
    Sysfs(Root),
}

impl PciSource {
    /// udev for the live root, the root's own sysfs tree otherwise.
    pub fn for_root(root: &Root) -> PciSource {
        if root.is_live() {
            PciSource::Udev
        } else {
            PciSource::Sysfs(root.clone())
        }
    }
}

/// One base address register (a line of sysfs `resource`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bar {
    /// Line number in `resource`: 0..=5 are BARs, 6 the expansion ROM, 7+ bridge windows.
    pub index: usize,
    /// First bus address of the region.
    pub start: u64,
    /// Last bus address of the region (inclusive).
    pub end: u64,
    /// `IORESOURCE_*` flags as the kernel prints them.
    pub flags: u64,
}

impl Bar {
    /// Length of the region in bytes; 0 for an unused line.
    pub fn size(&self) -> u64 {
        if self.end >= self.start && (self.end != 0 || self.start != 0) {
            self.end - self.start + 1
        } else {
            0
        }
    }
    /// A memory (not I/O port) region.
    pub fn is_mem(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0
    }
    fn is_io(&self) -> bool {
        self.flags & IORESOURCE_IO != 0
    }
    /// Prefetchable memory.
    pub fn is_prefetchable(&self) -> bool {
        self.flags & IORESOURCE_PREFETCH != 0
    }
    /// A 64-bit memory BAR.
    pub fn is_64bit(&self) -> bool {
        self.flags & IORESOURCE_MEM_64 != 0
    }
    /// A BAR the device asks for (it has a size) that got no address: the kernel leaves such a
    /// resource at start 0 (and marks it `IORESOURCE_UNSET`) when its window had no room.
    pub fn is_unassigned(&self) -> bool {
        (self.is_mem() || self.is_io())
            && self.size() > 0
            && (self.flags & IORESOURCE_UNSET != 0 || self.start == 0)
    }
}

/// PCIe link state from sysfs (`current_link_speed` = "5.0 GT/s PCIe", `current_link_width` = "1").
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Link {
    /// GT/s.
    pub current_speed: Option<f64>,
    /// Lanes in use.
    pub current_width: Option<u32>,
    /// Fastest speed the device supports, in GT/s.
    pub max_speed: Option<f64>,
    /// Most lanes the device supports.
    pub max_width: Option<u32>,
}

/// Advanced Error Reporting totals (`aer_dev_correctable` etc., `TOTAL_ERR_*` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Aer {
    /// Corrected errors since boot (`aer_dev_correctable`).
    pub correctable: u64,
    /// Uncorrected non-fatal errors since boot (`aer_dev_nonfatal`).
    pub nonfatal: u64,
    /// Uncorrected fatal errors since boot (`aer_dev_fatal`).
    pub fatal: u64,
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PciDevice {
    /// `DDDD:BB:DD.F`, e.g. `0000:01:00.0` (the domain differs between Pi kernels).
    pub address: String,
    /// The sysfs path as the kernel names it (`/sys/devices/platform/axi/1000110000.pcie/…`).
    pub syspath: PathBuf,
    /// PCI vendor id (`0x10de` NVIDIA).
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 24-bit class code (`0x030000` VGA, `0x030200` 3D controller, `0x060400` PCI bridge).
    pub class: u32,
    /// Subsystem vendor id (the board maker), when sysfs has it.
    pub subsystem_vendor: Option<u16>,
    /// Subsystem device id, when sysfs has it.
    pub subsystem_device: Option<u16>,
    /// The bound kernel driver (`nvidia`, `nouveau`, `pcieport`), if any.
    pub driver: Option<String>,
    /// The host-controller platform device this device sits under (`1000110000.pcie` for the
    /// Pi 5's external connector), from the sysfs path.
    pub controller: Option<String>,
    /// The root port on the path to this device (itself if it is one).
    pub root_port: Option<String>,
    /// The PCI device directly upstream (a bridge or the root port).
    pub upstream: Option<String>,
    /// PCIe link speed and width.
    pub link: Link,
    /// The lines of sysfs `resource`, BARs first.
    pub bars: Vec<Bar>,
    /// AER error totals, when the kernel exposes them.
    pub aer: Option<Aer>,
    /// sysfs `enable`: whether a driver enabled the device.
    pub enabled: Option<bool>,
    /// The first config-space dword read back as all ones: the device dropped off the bus.
    pub config_all_ones: bool,
}

impl PciDevice {
    /// Vendor id `0x10de`.
    pub fn is_nvidia(&self) -> bool {
        self.vendor == VENDOR_NVIDIA
    }
    /// Display controllers (class 0x03xxxx): VGA, 3D, other.
    pub fn is_display(&self) -> bool {
        self.class >> 16 == 0x03
    }
    /// NVIDIA GPU (not its HDMI audio or USB-C functions).
    pub fn is_nvidia_gpu(&self) -> bool {
        self.is_nvidia() && self.is_display()
    }
    /// An NVIDIA GPU of Turing or newer (it has a GSP), so the open modules can drive it:
    /// device ids from 0x1e00 up (TU102 = 0x1e02 …); Volta, Pascal and older sit below.
    /// Inferred from the public PCI id lists, not a documented rule.
    pub fn has_gsp(&self) -> bool {
        self.is_nvidia_gpu() && self.device >= 0x1e00
    }
    /// "10de:24b0".
    pub fn id(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor, self.device)
    }
}

/// Enumerates every PCI function, sorted by address.
pub fn devices(source: &PciSource) -> Result<Vec<PciDevice>, PciError> {
    let mut out = match source {
        PciSource::Udev => udev_devices()?,
        PciSource::Sysfs(root) => sysfs_devices(root)?,
    };
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

fn udev_devices() -> Result<Vec<PciDevice>, PciError> {
    let mut en = udev::Enumerator::new().map_err(PciError::Udev)?;
    en.match_subsystem("pci").map_err(PciError::Udev)?;
    let mut out = Vec::new();
    for dev in en.scan_devices().map_err(PciError::Udev)? {
        let attr = |name: &str| {
            dev.attribute_value(name)
                .map(|v| v.to_string_lossy().into_owned())
        };
        let driver = dev
            .driver()
            .map(|d| d.to_string_lossy().into_owned())
            .or_else(|| {
                dev.property_value("DRIVER")
                    .map(|d| d.to_string_lossy().into_owned())
            });
        let devpath = PathBuf::from(dev.devpath());
        let sysname = dev.sysname().to_string_lossy().into_owned();
        // Config space is binary: read the file itself (udev's attribute cache is text-only).
        let config = std::fs::read(dev.syspath().join("config")).ok();
        out.push(build(
            sysname,
            Path::new("/sys").join(devpath.strip_prefix("/").unwrap_or(&devpath)),
            &attr,
            driver,
            config.as_deref(),
        ));
    }
    Ok(out)
}

fn sysfs_devices(root: &Root) -> Result<Vec<PciDevice>, PciError> {
    let list = "/sys/bus/pci/devices";
    let names = root.list_dir(list).map_err(|source| PciError::Sysfs {
        path: root.path(list),
        source,
    })?;
    let mut out = Vec::new();
    for name in names {
        let link = root.path(format!("{list}/{name}"));
        // Entries are symlinks into /sys/devices; resolve them inside the root, not on the host.
        let dev_dir = match std::fs::read_link(&link) {
            Ok(target) => resolve_inside(&format!("{list}/{name}"), &target),
            Err(_) => format!("{list}/{name}"),
        };
        let attr = |a: &str| {
            root.read_optional(format!("{dev_dir}/{a}"))
                .ok()
                .flatten()
                .map(|s| s.trim_end_matches('\n').to_string())
        };
        let driver = std::fs::read_link(root.path(format!("{dev_dir}/driver")))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| uevent_value(&attr("uevent").unwrap_or_default(), "DRIVER"));
        let config = std::fs::read(root.path(format!("{dev_dir}/config"))).ok();
        out.push(build(
            name,
            PathBuf::from(dev_dir.clone()),
            &attr,
            driver,
            config.as_deref(),
        ));
    }
    Ok(out)
}

/// Resolves a (usually relative) symlink target found at `link_abs` to an absolute path in
/// the root's namespace, without following anything outside it.
fn resolve_inside(link_abs: &str, target: &Path) -> String {
    let mut parts: Vec<String> = if target.is_absolute() {
        Vec::new()
    } else {
        let parent = Path::new(link_abs).parent().unwrap_or(Path::new("/"));
        parent
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    for c in target.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn uevent_value(uevent: &str, key: &str) -> Option<String> {
    uevent.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(|v| v.trim().to_string())
    })
}

fn build(
    address: String,
    syspath: PathBuf,
    attr: &dyn Fn(&str) -> Option<String>,
    driver: Option<String>,
    config: Option<&[u8]>,
) -> PciDevice {
    let (controller, root_port, upstream) = topology(&syspath, &address);
    PciDevice {
        vendor: attr("vendor").and_then(|v| parse_hex(&v)).unwrap_or(0xffff) as u16,
        device: attr("device").and_then(|v| parse_hex(&v)).unwrap_or(0xffff) as u16,
        class: attr("class").and_then(|v| parse_hex(&v)).unwrap_or(0) as u32,
        subsystem_vendor: attr("subsystem_vendor")
            .and_then(|v| parse_hex(&v))
            .map(|v| v as u16),
        subsystem_device: attr("subsystem_device")
            .and_then(|v| parse_hex(&v))
            .map(|v| v as u16),
        driver,
        controller,
        root_port,
        upstream,
        link: Link {
            current_speed: attr("current_link_speed").and_then(|v| parse_speed(&v)),
            current_width: attr("current_link_width").and_then(|v| v.trim().parse().ok()),
            max_speed: attr("max_link_speed").and_then(|v| parse_speed(&v)),
            max_width: attr("max_link_width").and_then(|v| v.trim().parse().ok()),
        },
        bars: attr("resource")
            .map(|r| parse_resource(&r))
            .unwrap_or_default(),
        aer: parse_aer(
            attr("aer_dev_correctable").as_deref(),
            attr("aer_dev_nonfatal").as_deref(),
            attr("aer_dev_fatal").as_deref(),
        ),
        enabled: attr("enable").map(|v| v.trim() != "0"),
        config_all_ones: config.is_some_and(|c| c.len() >= 4 && c[..4] == [0xff; 4]),
        address,
        syspath,
    }
}

/// From `/sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0`:
/// controller `1000110000.pcie`, root port `0000:00:00.0`, upstream `0000:00:00.0`.
fn topology(syspath: &Path, me: &str) -> (Option<String>, Option<String>, Option<String>) {
    let parts: Vec<String> = syspath
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let Some(bus_idx) = parts
        .iter()
        .position(|p| p.starts_with("pci") && p.contains(':'))
    else {
        return (None, None, None);
    };
    let controller = bus_idx
        .checked_sub(1)
        .map(|i| parts[i].clone())
        .filter(|c| c != "devices");
    let chain: Vec<&String> = parts[bus_idx + 1..]
        .iter()
        .filter(|p| is_pci_address(p))
        .collect();
    let root_port = chain.first().map(|s| s.to_string());
    let upstream = chain
        .iter()
        .position(|p| p.as_str() == me)
        .and_then(|i| i.checked_sub(1))
        .map(|i| chain[i].to_string());
    (controller, root_port, upstream)
}

fn is_pci_address(s: &str) -> bool {
    // DDDD:BB:DD.F
    let b = s.as_bytes();
    b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// "8.0 GT/s PCIe" → 8.0; "Unknown" or garbage → None.
fn parse_speed(s: &str) -> Option<f64> {
    let v: f64 = s.split_whitespace().next()?.parse().ok()?;
    (v > 0.0).then_some(v)
}

/// The PCIe generation for a link speed in GT/s (2.5 → 1, 5 → 2, 8 → 3, 16 → 4, …).
pub fn generation(gts: f64) -> u32 {
    match gts {
        s if s < 4.0 => 1,
        s if s < 7.0 => 2,
        s if s < 12.0 => 3,
        s if s < 24.0 => 4,
        s if s < 48.0 => 5,
        _ => 6,
    }
}

fn parse_resource(text: &str) -> Vec<Bar> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let mut it = line.split_whitespace().map(parse_hex);
            let (start, end, flags) = (it.next()??, it.next()??, it.next()??);
            let bar = Bar {
                index,
                start,
                end,
                flags,
            };
            (bar.flags != 0 || bar.size() > 0).then_some(bar)
        })
        .collect()
}

fn parse_aer(cor: Option<&str>, nonfatal: Option<&str>, fatal: Option<&str>) -> Option<Aer> {
    if cor.is_none() && nonfatal.is_none() && fatal.is_none() {
        return None;
    }
    let total = |text: Option<&str>, key: &str| {
        text.unwrap_or("")
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    Some(Aer {
        correctable: total(cor, "TOTAL_ERR_COR"),
        nonfatal: total(nonfatal, "TOTAL_ERR_NONFATAL"),
        fatal: total(fatal, "TOTAL_ERR_FATAL"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_of_a_pi5_gpu() {
        let p = Path::new(
            "/sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0",
        );
        let (c, r, u) = topology(p, "0000:01:00.0");
        assert_eq!(c.as_deref(), Some("1000110000.pcie"));
        assert_eq!(r.as_deref(), Some("0000:00:00.0"));
        assert_eq!(u.as_deref(), Some("0000:00:00.0"));
        let (_, r, u) = topology(
            Path::new("/sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0"),
            "0000:00:00.0",
        );
        assert_eq!(r.as_deref(), Some("0000:00:00.0"));
        assert_eq!(u, None);
        // An x86 root complex has no platform controller.
        let (c, _, _) = topology(
            Path::new("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"),
            "0000:01:00.0",
        );
        assert_eq!(c, None);
    }

    #[test]
    fn resources_and_unassigned_bars() {
        let text = "0x0000001b00000000 0x0000001b00ffffff 0x0000000000040200\n\
                    0x0000000000000000 0x000000000fffffff 0x000000002014220c\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
        let bars = parse_resource(text);
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].size(), 16 << 20);
        assert!(!bars[0].is_unassigned());
        assert!(bars[1].is_unassigned());
        assert!(bars[1].is_prefetchable() && bars[1].is_64bit());
        assert_eq!(bars[1].index, 1);
    }

    #[test]
    fn speeds_and_generations() {
        assert_eq!(parse_speed("8.0 GT/s PCIe"), Some(8.0));
        assert_eq!(parse_speed("Unknown"), None);
        assert_eq!(generation(2.5), 1);
        assert_eq!(generation(5.0), 2);
        assert_eq!(generation(8.0), 3);
        assert_eq!(generation(16.0), 4);
    }

    /// A sysfs tree laid out like the kernel's: `bus/pci/devices/*` are relative symlinks.
    #[test]
    fn sysfs_walk_under_a_fake_root() {
        let dir = tempfile::tempdir().unwrap();
        let dev = "sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0";
        let d = dir.path().join(dev);
        std::fs::create_dir_all(&d).unwrap();
        for (k, v) in [
            ("vendor", "0x10de\n"),
            ("device", "0x2504\n"),
            ("class", "0x030000\n"),
            ("current_link_speed", "2.5 GT/s PCIe\n"),
            ("max_link_speed", "16.0 GT/s PCIe\n"),
        ] {
            std::fs::write(d.join(k), v).unwrap();
        }
        std::fs::write(d.join("config"), [0xffu8; 64]).unwrap();
        let bus = dir.path().join("sys/bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0",
            bus.join("0000:01:00.0"),
        )
        .unwrap();
        let devs = devices(&PciSource::Sysfs(Root::new(dir.path()))).unwrap();
        assert_eq!(devs.len(), 1);
        let g = &devs[0];
        assert!(g.is_nvidia_gpu());
        assert!(g.has_gsp(), "GA106 (0x2504) is Ampere");
        for (device, gsp) in [
            (0x24b0, true),
            (0x1e30, true),
            (0x2182, true),
            (0x1b80, false),
            (0x1db4, false),
            (0x1c82, false),
        ] {
            let d = PciDevice {
                device,
                ..g.clone()
            };
            assert_eq!(d.has_gsp(), gsp, "{device:#x}");
        }
        assert_eq!(g.id(), "10de:2504");
        assert_eq!(g.controller.as_deref(), Some("1000110000.pcie"));
        assert_eq!(g.link.current_speed, Some(2.5));
        assert_eq!(g.driver, None);
        assert!(g.config_all_ones);
        // No sysfs at all: no devices, no error.
        let empty = tempfile::tempdir().unwrap();
        assert!(devices(&PciSource::Sysfs(Root::new(empty.path())))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn aer_totals() {
        let a = parse_aer(
            Some("RxErr 3\nBadTLP 1\nTOTAL_ERR_COR 4\n"),
            None,
            Some("TOTAL_ERR_FATAL 0\n"),
        )
        .unwrap();
        assert_eq!(a.correctable, 4);
        assert_eq!(a.fatal, 0);
        assert_eq!(parse_aer(None, None, None), None);
    }
}
