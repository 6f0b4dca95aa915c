//! `vulkan`: the Vulkan loader (`libvulkan.so.1`), the ICD manifests in the standard
//! directories and the libraries they name (`nvidia_icd.json` → `libGLX_nvidia.so.0`, which
//! itself needs libX11/libXext), and — when the binary provides a device lister (the Vulkan
//! engine's) — the devices Vulkan actually sees.

use super::{find_library, nvidia_expected};
use crate::doctor::host::VulkanDevice;
use crate::doctor::{Finding, Host};

/// Where the loader looks for ICD manifests (system scope, in its search order).
pub const ICD_DIRS: &[&str] = &[
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/share/vulkan/icd.d",
];

/// Libraries libGLX_nvidia.so.0 cannot load without (seen missing on minimal images and in
/// containers: "libXext.so.6: cannot open shared object file").
const NVIDIA_ICD_DEPS: &[(&str, &str)] =
    &[("libX11.so.6", "libx11-6"), ("libXext.so.6", "libxext6")];

const FIX_USERSPACE: &str = "install the NVIDIA userspace of the module's version (it provides /usr/share/vulkan/icd.d/nvidia_icd.json and libGLX_nvidia.so.0): sudo pigpu setup";

pub fn run(host: &Host) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    match find_library(host, "libvulkan.so.1") {
        Some(p) => {
            out.push(Finding::ok("vulkan-loader", "the Vulkan loader is installed").evidence(p))
        }
        None => out.push(
            Finding::fail(
                "vulkan-loader",
                "the Vulkan loader (libvulkan.so.1) is not installed",
            )
            .fix("sudo apt install libvulkan1"),
        ),
    }

    let mut icds = Vec::new();
    let mut broken = Vec::new();
    let mut nvidia_icd = false;
    for dir in ICD_DIRS {
        for f in host.root.list_dir(dir).unwrap_or_default() {
            if !f.ends_with(".json") {
                continue;
            }
            let path = format!("{dir}/{f}");
            let Some(text) = host.read(&path) else {
                broken.push(format!("{path}: unreadable"));
                continue;
            };
            let lib = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("ICD")?
                        .get("library_path")?
                        .as_str()
                        .map(str::to_string)
                });
            let Some(lib) = lib else {
                broken.push(format!("{path}: not an ICD manifest (no ICD.library_path)"));
                continue;
            };
            let is_nvidia = lib.contains("nvidia") || f.contains("nvidia");
            nvidia_icd |= is_nvidia;
            let found = if lib.contains('/') {
                let abs = if lib.starts_with('/') {
                    lib.clone()
                } else {
                    format!("{dir}/{lib}")
                };
                host.root.exists_resolved(&abs).then_some(abs)
            } else {
                find_library(host, &lib)
            };
            match found {
                Some(p) => {
                    icds.push(format!("{path} -> {p}"));
                    if is_nvidia {
                        for (dep, pkg) in NVIDIA_ICD_DEPS {
                            if find_library(host, dep).is_none() {
                                broken.push(format!(
                                    "{lib} needs {dep}, which is not installed (package {pkg})"
                                ));
                            }
                        }
                    }
                }
                None => broken.push(format!("{path} names {lib}, which is not installed")),
            }
        }
    }
    if !broken.is_empty() {
        out.push(
            Finding::fail(
                "vulkan-icd-broken",
                "a Vulkan driver manifest points at a library that cannot load",
            )
            .evidence_all(broken)
            .fix(format!(
                "{FIX_USERSPACE} (minimal images also: sudo apt install libx11-6 libxext6)"
            )),
        );
    }
    if !icds.is_empty() {
        out.push(
            Finding::ok(
                "vulkan-icd",
                format!("{} Vulkan driver(s) installed", icds.len()),
            )
            .evidence_all(icds),
        );
    }
    if nvidia_expected(host) && !nvidia_icd {
        out.push(
            Finding::fail("vulkan-no-gpu", "there is an NVIDIA GPU or module but no NVIDIA Vulkan driver (nvidia_icd.json): Vulkan would list only V3D / llvmpipe")
                .fix(FIX_USERSPACE),
        );
    }

    match host.vulkan_lister {
        Some(list) => out.extend(devices(list())),
        None if host.is_live() => out.push(Finding::skip(
            "vulkan-devices",
            "this build cannot list Vulkan devices yet; checked the loader and driver files only (vulkaninfo --summary shows them)",
        )),
        None => {}
    }
    Ok(out)
}

/// Findings for the devices Vulkan enumerates.
pub fn devices(listed: Result<Vec<VulkanDevice>, String>) -> Vec<Finding> {
    let devs = match listed {
        Ok(d) => d,
        Err(e) => {
            return vec![Finding::fail(
                "vulkan-no-gpu",
                format!("Vulkan could not enumerate devices: {e}"),
            )
            .fix("see the driver findings; vulkaninfo --summary shows the loader's messages")]
        }
    };
    let describe = |d: &VulkanDevice| match &d.problem {
        Some(p) => format!("{} ({}; unusable: {p})", d.name, d.kind),
        None => format!("{} ({})", d.name, d.kind),
    };
    let names: Vec<String> = devs.iter().map(describe).collect();
    let is_gpu = |d: &&VulkanDevice| {
        d.kind == "discrete" || (d.kind == "integrated" && !d.name.contains("V3D"))
    };
    let gpus: Vec<&VulkanDevice> = devs.iter().filter(is_gpu).collect();
    if gpus.is_empty() {
        return vec![Finding::fail(
            "vulkan-no-gpu",
            if names.is_empty() {
                "Vulkan lists no device at all".to_string()
            } else {
                format!("Vulkan lists only {}: no NVIDIA GPU", names.join(", "))
            },
        )
        .evidence_all(names)
        .fix(FIX_USERSPACE)];
    }
    if gpus.iter().all(|d| d.problem.is_some()) {
        return vec![Finding::warn(
            "vulkan-devices",
            "Vulkan sees a GPU, but pigpu's engine cannot use it",
        )
        .evidence_all(names)
        .fix("see the reason above; pigpu run --list-devices shows the same")];
    }
    vec![Finding::ok(
        "vulkan-devices",
        format!("Vulkan devices: {}", names.join(", ")),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, kind: &str, problem: Option<&str>) -> VulkanDevice {
        VulkanDevice {
            name: name.into(),
            kind: kind.into(),
            problem: problem.map(Into::into),
        }
    }

    #[test]
    fn device_lists() {
        let f = devices(Ok(vec![
            dev("V3D 7.1.10.2", "integrated", None),
            dev("llvmpipe (LLVM 15.0.6, 256 bits)", "cpu", None),
        ]));
        assert_eq!(
            (f[0].id.as_str(), f[0].status),
            ("vulkan-no-gpu", crate::doctor::Status::Fail)
        );
        let f = devices(Ok(vec![
            dev("NVIDIA RTX A4000", "discrete", None),
            dev("V3D 7.1.10.2", "integrated", None),
        ]));
        assert_eq!(
            (f[0].id.as_str(), f[0].status),
            ("vulkan-devices", crate::doctor::Status::Ok)
        );
        let f = devices(Ok(vec![dev(
            "NVIDIA RTX A4000",
            "discrete",
            Some("no 16-bit storage"),
        )]));
        assert_eq!(f[0].status, crate::doctor::Status::Warn);
        let f = devices(Err("VK_ERROR_INCOMPATIBLE_DRIVER".into()));
        assert_eq!(f[0].id, "vulkan-no-gpu");
    }
}
