//! `driver`: the NVIDIA kernel modules for the running kernel (found through libkmod, as
//! modprobe would), whether they are the open ones and loaded, whether module, loaded driver,
//! userspace libraries and GSP firmware are all the same version, which driver the GPU is bound
//! to, and that nouveau stays away. A driver that is loaded and has initialised its GPUs is
//! taken as the truth: files it no longer needs (a module outside `/lib/modules`, firmware not
//! under `/lib/firmware`) are then `info`, not failures.

use super::{find_library, library_files, nvidia_expected, nvidia_gpus, on_pi, setup_or};
use crate::doctor::{Finding, Patient};
pub use crate::platform::nvidia::proc_version;
use crate::sys::kmod::{self, LoadedModule, ModuleInfo};
use crate::sys::pci::PciDevice;

/// How to get modules for the running kernel, on this machine.
fn fix_modules(host: &Patient) -> String {
    setup_or(
        host,
        "build and install the patched open modules for this kernel",
        "install the NVIDIA driver's kernel modules for the running kernel (the distribution's NVIDIA driver packages, or NVIDIA's installer)",
    )
}

/// How to get NVIDIA's userspace of the module's version, on this machine.
fn fix_userspace(host: &Patient) -> String {
    setup_or(
        host,
        "install the NVIDIA userspace of the module's version",
        "install the NVIDIA userspace (libraries and firmware) of exactly the kernel module's version, then reboot",
    )
}
const FIX_NOUVEAU: &str = "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && sudo update-initramfs -u && sudo reboot";

/// Libraries of the NVIDIA userspace that carry the version in their file name.
const USERSPACE_LIBS: &[&str] = &[
    "libnvidia-ml.so.",
    "libGLX_nvidia.so.",
    "libnvidia-glcore.so.",
    "libnvidia-eglcore.so.",
    "libnvidia-gpucomp.so.",
];

/// `580.95.05` out of `libnvidia-ml.so.580.95.05` (not the soname `.so.1`).
fn lib_version(path: &str, prefix: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let v = name.strip_prefix(prefix)?;
    (v.matches('.').count() >= 1 && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| v.to_string())
}

/// Versions that have GSP firmware installed (`/lib/firmware/nvidia/<ver>/gsp_*.bin`).
fn firmware_versions(host: &Patient) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for base in ["/lib/firmware/nvidia", "/usr/lib/firmware/nvidia"] {
        for v in host.root.list_dir(base).unwrap_or_default() {
            let files: Vec<String> = host
                .root
                .list_dir(format!("{base}/{v}"))
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f.starts_with("gsp_") && f.contains(".bin"))
                .map(|f| format!("{base}/{v}/{f}"))
                .collect();
            if !files.is_empty() && !out.iter().any(|(x, _): &(String, _)| *x == v) {
                out.push((v, files));
            }
        }
    }
    out
}

/// What the parts of the check share: the running kernel, its nvidia module, the GPUs, what is
/// loaded, and whether a driver is expected and working.
struct Seen<'h> {
    host: &'h Patient,
    /// The running kernel's release.
    rel: String,
    gpus: Vec<PciDevice>,
    /// An NVIDIA GPU is on the bus (or the board is one that gets one).
    expected: bool,
    /// The loaded driver has initialised its GPUs.
    working: bool,
    /// `/proc/modules`, `None` when unknown.
    loaded: Option<Vec<LoadedModule>>,
    /// The nvidia module modprobe would load for `rel`.
    nvidia: Option<ModuleInfo>,
}

impl Seen<'_> {
    /// Whether module `name` is loaded; `None` when `/proc/modules` cannot say.
    fn is_loaded(&self, name: &str) -> Option<bool> {
        if name == "nvidia" && self.host.platform().nvidia.loaded {
            return Some(true);
        }
        self.loaded
            .as_ref()
            .map(|l| l.iter().any(|m| m.name == name))
    }
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let Some(rel) = host.kernel_release() else {
        return Ok(vec![Finding::skip(
            "driver",
            "cannot tell the running kernel's release",
        )]);
    };
    let seen = Seen {
        host,
        gpus: nvidia_gpus(host),
        expected: nvidia_expected(host),
        working: host.platform().nvidia.working(),
        loaded: kmod::loaded_modules(&host.root).unwrap_or(None),
        nvidia: kmod::find_module(&host.root, &rel, "nvidia")?,
        rel,
    };

    let mut out = Vec::new();
    match &seen.nvidia {
        Some(m) => {
            out.push(module_installed(&seen, m));
            out.extend(module_license(&seen, m));
        }
        None => out.push(module_missing(&seen)),
    }
    out.extend(module_loaded(&seen));
    let kernel_side = kernel_versions(&seen);
    out.extend(versions_agree(&seen, &kernel_side));
    if let Some((v, _)) = kernel_side.first() {
        out.push(gsp_firmware(&seen, v));
    }
    out.extend(seen.gpus.iter().map(|g| gpu_driver(&seen, g)));
    if seen.expected
        && !seen
            .gpus
            .iter()
            .any(|g| g.driver.as_deref() == Some("nouveau"))
    {
        out.push(nouveau_kept_away(&seen));
    }
    Ok(out)
}

/// The installed nvidia module `m`: built for the running kernel, and its companions.
fn module_installed(seen: &Seen, m: &ModuleInfo) -> Finding {
    let (host, rel) = (seen.host, &seen.rel);
    let companions: Vec<String> = ["nvidia-uvm", "nvidia-modeset", "nvidia-drm"]
        .iter()
        .filter(|n| {
            kmod::find_module(&host.root, rel, n)
                .ok()
                .flatten()
                .is_none()
        })
        .map(|n| n.to_string())
        .collect();
    let built_for = m
        .vermagic
        .as_deref()
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("");
    if !built_for.is_empty() && built_for != rel {
        Finding::fail(
            "driver-modules",
            format!("nvidia.ko was built for kernel {built_for}, but {rel} is running"),
        )
        .evidence(format!(
            "{}: vermagic {}",
            m.path.display(),
            m.vermagic.clone().unwrap_or_default()
        ))
        .fix(fix_modules(host))
    } else {
        let mut f = Finding::ok(
            "driver-modules",
            format!(
                "nvidia.ko {} is installed for {rel}",
                m.version.as_deref().unwrap_or("(no version)")
            ),
        )
        .evidence(m.path.display().to_string());
        if !companions.is_empty() {
            f.summary
                .push_str(&format!(" (not installed: {})", companions.join(", ")));
        }
        f
    }
}

/// Whether the installed module `m` is the open one (the proprietary one is fine off a Pi).
fn module_license(seen: &Seen, m: &ModuleInfo) -> Option<Finding> {
    let host = seen.host;
    match m.license.as_deref() {
        Some(l) if l.contains("NVIDIA") && !l.contains("GPL") && !on_pi(host) => Some(
            Finding::ok("driver-open", "the installed nvidia.ko is NVIDIA's proprietary module (fine off a Pi)")
                .evidence(format!("modinfo nvidia: license {l}")),
        ),
        Some(l) if l.contains("NVIDIA") && !l.contains("GPL") => Some(
            Finding::fail("driver-proprietary", "the installed nvidia.ko is the proprietary (closed) module; only the patched open modules work on a Pi")
                .evidence(format!("modinfo nvidia: license {l}"))
                .fix("install the patched open modules instead: sudo pigpu setup"),
        ),
        Some(l) => Some(
            Finding::ok("driver-open", "the installed nvidia.ko is the open kernel module")
                .evidence(format!("modinfo nvidia: license {l}")),
        ),
        None => None,
    }
}

/// No nvidia module in the running kernel's index: files outside the index, a module loaded
/// from elsewhere, modules left for another kernel, or none at all.
fn module_missing(seen: &Seen) -> Finding {
    let (host, rel) = (seen.host, &seen.rel);
    let platform = host.platform();
    let files = kmod::module_files(&host.root, rel, "nvidia");
    if !files.is_empty() {
        Finding::fail("driver-modules", format!("NVIDIA modules are on disk for {rel} but not in the module index, so modprobe cannot find them"))
            .evidence_all(files.iter().map(|p| p.display().to_string()))
            .fix("sudo depmod -a")
    } else if seen.is_loaded("nvidia") == Some(true) {
        // Loaded from somewhere else (a driver container, an installer that put it
        // outside /lib/modules/<rel>): what runs is what counts.
        let version = platform
            .nvidia
            .version
            .as_deref()
            .unwrap_or("(version unknown)");
        Finding::info(
            "driver-modules",
            if seen.working {
                format!("the nvidia module {version} is loaded and has initialised {} GPU(s), though it is not installed under /lib/modules/{rel}", platform.nvidia.initialised.len())
            } else {
                format!("the nvidia module {version} is loaded, though it is not installed under /lib/modules/{rel}")
            },
        )
        .evidence("/proc/modules: nvidia")
        .evidence_all(platform.nvidia.initialised.iter().map(|g| format!("/proc/driver/nvidia/gpus/{g}")))
    } else if seen.expected {
        let other: Vec<String> = host
            .root
            .list_dir("/lib/modules")
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r != rel && !kmod::module_files(&host.root, r, "nvidia").is_empty())
            .collect();
        let mut f = Finding::fail(
            "driver-modules",
            format!("no NVIDIA kernel module is installed for the running kernel {rel}"),
        )
        .fix(fix_modules(host));
        if !other.is_empty() {
            f.summary.push_str(&format!(
                " (there are modules for {}: the kernel was updated since they were built)",
                other.join(", ")
            ));
            f = f.fix(setup_or(host, "rebuild the modules for the running kernel (setup also holds the kernel packages, apt-mark hold, so an upgrade cannot do this again)", &fix_modules(host)));
        }
        f
    } else {
        Finding::skip(
            "driver-modules",
            format!("no NVIDIA GPU and no NVIDIA module for {rel}"),
        )
    }
}

/// Whether nvidia is loaded (nothing to say when it is neither loaded nor installed).
fn module_loaded(seen: &Seen) -> Option<Finding> {
    match seen.is_loaded("nvidia") {
        Some(true) => Some(
            Finding::ok("driver-loaded", "the nvidia module is loaded")
                .evidence("/proc/modules: nvidia"),
        ),
        Some(false) if seen.nvidia.is_some() => Some(
            Finding::warn("driver-loaded", "nvidia is installed but not loaded")
                .evidence("/proc/modules: no nvidia")
                .fix("sudo modprobe nvidia; if that fails, look at: sudo dmesg | grep NVRM"),
        ),
        _ => None,
    }
}

/// The kernel side's versions, each with where it was read: the installed module, the loaded
/// one, `/proc/driver/nvidia/version`.
fn kernel_versions(seen: &Seen) -> Vec<(String, String)> {
    let host = seen.host;
    let mut versions: Vec<(String, String)> = Vec::new();
    if let Some(m) = &seen.nvidia {
        if let Some(v) = m.version.clone() {
            versions.push((v, format!("modinfo nvidia ({}): version", m.path.display())));
        }
    }
    if let Some(v) = kmod::loaded_version(&host.root, "nvidia") {
        versions.push((v, "/sys/module/nvidia/version".into()));
    }
    if let Some(v) = host
        .read("/proc/driver/nvidia/version")
        .as_deref()
        .and_then(proc_version)
    {
        versions.push((v, "/proc/driver/nvidia/version".into()));
    }
    versions
}

/// Whether the kernel side (`kernel_side`, from [`kernel_versions`]) and the userspace
/// libraries are all one version, or the userspace is missing.
fn versions_agree(seen: &Seen, kernel_side: &[(String, String)]) -> Option<Finding> {
    let host = seen.host;
    let mut user_versions = Vec::new();
    for prefix in USERSPACE_LIBS {
        for p in library_files(host, prefix) {
            if let Some(v) = lib_version(&p, prefix) {
                user_versions.push((v, p));
            }
        }
    }
    let mut all = kernel_side.to_vec();
    all.extend(user_versions.iter().cloned());
    if all.len() >= 2 {
        let first = &all[0].0;
        if all.iter().any(|(v, _)| v != first) {
            Some(
                Finding::fail("driver-version-mismatch", "the NVIDIA module, the loaded driver and the userspace libraries are not all the same version")
                    .evidence_all(all.iter().map(|(v, w)| format!("{w}: {v}")))
                    .fix(setup_or(host, "rebuild the modules for the installed userspace version (or install the userspace of the module's version), then reboot", "install the NVIDIA userspace and kernel module of one version, then reboot")),
            )
        } else {
            Some(
                Finding::ok(
                    "driver-version",
                    format!("kernel module and userspace are both {first}"),
                )
                .evidence_all(all.iter().map(|(v, w)| format!("{w}: {v}"))),
            )
        }
    } else if !kernel_side.is_empty()
        && user_versions.is_empty()
        && find_library(host, "libGLX_nvidia.so.0").is_none()
    {
        Some(
            Finding::warn(
                "driver-version",
                "the NVIDIA userspace (libnvidia-ml, libGLX_nvidia) is not installed",
            )
            .fix(fix_userspace(host)),
        )
    } else {
        None
    }
}

/// GSP firmware for the kernel side's version `v`.
fn gsp_firmware(seen: &Seen, v: &str) -> Finding {
    let host = seen.host;
    let fw = firmware_versions(host);
    match fw.iter().find(|(fv, _)| fv == v) {
        Some((_, files)) => Finding::ok("gsp-firmware", format!("GSP firmware for {v} is installed"))
            .evidence_all(files.clone()),
        None if seen.working => Finding::info(
            "gsp-firmware",
            format!("no GSP firmware for {v} under /lib/firmware, but the driver has initialised the GPU(s), so it had what it needed"),
        )
        .evidence(format!("/lib/firmware/nvidia/{v}/gsp_*.bin: missing"))
        .evidence_all(host.platform().nvidia.initialised.iter().map(|g| format!("/proc/driver/nvidia/gpus/{g}"))),
        None => {
            let mut f = Finding::fail("gsp-firmware-missing", format!("no GSP firmware for {v}: the driver cannot start the GPU"))
                .evidence(format!("/lib/firmware/nvidia/{v}/gsp_*.bin: missing"))
                .fix(fix_userspace(host));
            if !fw.is_empty() {
                f.summary.push_str(&format!(
                    " (firmware present for: {})",
                    fw.iter()
                        .map(|(v, _)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            f
        }
    }
}

/// Which driver has GPU `g`.
fn gpu_driver(seen: &Seen, g: &PciDevice) -> Finding {
    let nvidia_loaded = seen.is_loaded("nvidia") == Some(true);
    // modprobe only helps when there is a module to load.
    let load = |how: &str| match seen.nvidia {
        Some(_) => how.to_string(),
        None => fix_modules(seen.host),
    };
    match g.driver.as_deref() {
        Some("nvidia") => Finding::ok(
            "gpu-driver-bound",
            format!("{} is driven by nvidia", g.address),
        ),
        Some("nouveau") => Finding::fail(
            "nouveau-bound",
            format!(
                "{} is driven by nouveau, which does not work on the Pi and keeps nvidia off it",
                g.address
            ),
        )
        .evidence(format!("{}/driver -> nouveau", g.syspath.display()))
        .fix(FIX_NOUVEAU),
        Some(other) => Finding::warn(
            "gpu-driver-bound",
            format!("{} is driven by {other}", g.address),
        )
        .fix(load("unbind it and load nvidia: sudo modprobe nvidia")),
        None if nvidia_loaded => Finding::fail(
            "gpu-driver-bound",
            format!(
                "nvidia is loaded but did not take {}: it failed to initialise the GPU",
                g.address
            ),
        )
        .fix("see the kernel-log findings (sudo dmesg | grep NVRM) for why"),
        None => Finding::warn(
            "gpu-driver-bound",
            format!("no driver is bound to {}", g.address),
        )
        .fix(load("sudo modprobe nvidia")),
    }
}

/// That nouveau is neither loaded nor able to take the GPU at boot (asked only where a GPU is
/// expected and nouveau does not hold one now).
fn nouveau_kept_away(seen: &Seen) -> Finding {
    let host = seen.host;
    let blacklisted = blacklists_nouveau(host);
    if seen.is_loaded("nouveau") == Some(true) {
        Finding::warn(
            "nouveau-bound",
            "nouveau is loaded (not bound to the GPU now, but it may take it)",
        )
        .evidence("/proc/modules: nouveau")
        .fix(FIX_NOUVEAU)
    } else if !blacklisted
        && kmod::find_module(&host.root, &seen.rel, "nouveau")
            .ok()
            .flatten()
            .is_some()
    {
        Finding::warn(
            "nouveau-bound",
            "nouveau is installed and not blacklisted: it can take the GPU before nvidia at boot",
        )
        .fix(FIX_NOUVEAU)
    } else {
        Finding::ok("nouveau-bound", "nouveau is not bound to the GPU")
    }
}

/// `blacklist nouveau` in a modprobe.d file, or `modprobe.blacklist=nouveau` on the command line.
fn blacklists_nouveau(host: &Patient) -> bool {
    for dir in [
        "/etc/modprobe.d",
        "/lib/modprobe.d",
        "/usr/lib/modprobe.d",
        "/run/modprobe.d",
    ] {
        for f in host.root.list_dir(dir).unwrap_or_default() {
            if !f.ends_with(".conf") {
                continue;
            }
            if let Some(t) = host.read(&format!("{dir}/{f}")) {
                if t.lines().any(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.len() >= 2 && w[0] == "blacklist" && w[1] == "nouveau"
                }) {
                    return true;
                }
            }
        }
    }
    host.read("/proc/cmdline").is_some_and(|c| {
        c.split_whitespace()
            .any(|w| w.starts_with("modprobe.blacklist=") && w.contains("nouveau"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings() {
        assert_eq!(
            lib_version("/usr/lib/x/libnvidia-ml.so.580.95.05", "libnvidia-ml.so."),
            Some("580.95.05".into())
        );
        assert_eq!(
            lib_version("/usr/lib/x/libnvidia-ml.so.1", "libnvidia-ml.so."),
            None
        );
    }
}
