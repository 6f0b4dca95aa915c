//! `vulkan`: the Vulkan loader (`libvulkan.so.1`), the ICD manifests and whether the library
//! each names actually loads (the platform model tries it: the real loader on this machine, the
//! ELF dependencies inside another root), the missing dependency named with its package, and —
//! when the binary provides a device lister (the Vulkan engine's) — the devices Vulkan sees.

use super::{nvidia_expected, setup_or};
use crate::doctor::patient::VulkanDevice;
use crate::doctor::{Finding, Patient};
use crate::platform::vulkan::{self as pv, Load};

fn fix_userspace(host: &Patient) -> String {
    setup_or(
        host,
        "install the NVIDIA userspace of the module's version (it provides /usr/share/vulkan/icd.d/nvidia_icd.json and libGLX_nvidia.so.0)",
        "install the NVIDIA userspace (libGLX_nvidia.so.0 and nvidia_icd.json) of the kernel module's version",
    )
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let v = host.platform().vulkan();
    match &v.loader {
        Some(p) => out.push(
            Finding::ok("vulkan-loader", "the Vulkan loader is installed").evidence(p.clone()),
        ),
        None => out.push(
            Finding::fail(
                "vulkan-loader",
                "the Vulkan loader (libvulkan.so.1) is not installed",
            )
            .fix("sudo apt install libvulkan1"),
        ),
    }

    // Broken drivers: what stops each, and one fix for all of them.
    let mut broken: Vec<String> = v.bad_manifests.clone();
    let mut packages: Vec<String> = Vec::new();
    let mut need_userspace = !v.bad_manifests.is_empty();
    let mut loads = Vec::new();
    for icd in &v.icds {
        match (&icd.load, icd.problem()) {
            (_, Some(p)) => {
                broken.push(p);
                match &icd.load {
                    Load::Missing {
                        package: Some(pkg), ..
                    } if !packages.contains(pkg) => packages.push(pkg.clone()),
                    Load::Missing {
                        package: Some(_), ..
                    } => {}
                    _ => need_userspace = true,
                }
            }
            (Load::Unverified { why }, None) => loads.push(format!(
                "{} -> {} (not loaded to check: {why})",
                icd.manifest,
                icd.resolved.as_deref().unwrap_or("?")
            )),
            (_, None) => loads.push(format!(
                "{} -> {} (loads)",
                icd.manifest,
                icd.resolved.as_deref().unwrap_or("?")
            )),
        }
    }
    if !broken.is_empty() {
        let mut fixes = Vec::new();
        if !packages.is_empty() {
            fixes.push(format!("sudo apt install {}", packages.join(" ")));
        }
        if need_userspace {
            fixes.push(fix_userspace(host));
        }
        out.push(
            Finding::fail(
                "vulkan-icd-broken",
                if packages.is_empty() {
                    "a Vulkan driver cannot load".to_string()
                } else {
                    format!(
                        "a Vulkan driver cannot load: a library it needs is missing (package {})",
                        packages.join(", ")
                    )
                },
            )
            .evidence_all(broken)
            .fix(fixes.join("; then ")),
        );
    }
    if !loads.is_empty() {
        out.push(
            Finding::ok(
                "vulkan-icd",
                format!("{} Vulkan driver(s) installed that can load", loads.len()),
            )
            .evidence_all(loads),
        );
    }
    if nvidia_expected(host) && !v.icds.iter().any(|i| i.is_nvidia) {
        out.push(
            Finding::fail("vulkan-no-gpu", "there is an NVIDIA GPU or module but no NVIDIA Vulkan driver (nvidia_icd.json): Vulkan would list only V3D / llvmpipe")
                .fix(fix_userspace(host)),
        );
    }

    match host.vulkan_lister {
        Some(list) => out.extend(devices(list(), pv::no_device_cause(v).as_deref())),
        None if host.is_live() => out.push(Finding::skip(
            "vulkan-devices",
            "this build cannot list Vulkan devices yet; checked the loader and driver files only (vulkaninfo --summary shows them)",
        )),
        None => {}
    }
    Ok(out)
}

/// Findings for the devices Vulkan enumerates.
/// `cause`: the platform's reason why a driver cannot load, said with a missing GPU.
pub fn devices(listed: Result<Vec<VulkanDevice>, String>, cause: Option<&str>) -> Vec<Finding> {
    let fix = match cause {
        Some(c) => format!("{c}; pigpu run --list-devices says the same"),
        None => "see the driver findings; vulkaninfo --summary shows the loader's messages".into(),
    };
    let devs = match listed {
        Ok(d) => d,
        Err(e) => {
            return vec![Finding::fail(
                "vulkan-no-gpu",
                format!("Vulkan could not enumerate devices: {e}"),
            )
            .evidence_all(cause.map(|c| format!("cause: {c}")))
            .fix(fix)]
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
        .evidence_all(cause.map(|c| format!("cause: {c}")))
        .fix(fix)];
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
        let f = devices(
            Ok(vec![
                dev("V3D 7.1.10.2", "integrated", None),
                dev("llvmpipe (LLVM 15.0.6, 256 bits)", "cpu", None),
            ]),
            Some("libGLX_nvidia.so.0 cannot load: needs libGLdispatch.so.0"),
        );
        assert_eq!(
            (f[0].id.as_str(), f[0].status),
            ("vulkan-no-gpu", crate::doctor::Status::Fail)
        );
        assert!(f[0].fix.as_deref().unwrap().contains("libGLdispatch.so.0"));
        let f = devices(
            Ok(vec![
                dev("NVIDIA RTX A4000", "discrete", None),
                dev("V3D 7.1.10.2", "integrated", None),
            ]),
            None,
        );
        assert_eq!(
            (f[0].id.as_str(), f[0].status),
            ("vulkan-devices", crate::doctor::Status::Ok)
        );
        let f = devices(
            Ok(vec![dev(
                "NVIDIA RTX A4000",
                "discrete",
                Some("no 16-bit storage"),
            )]),
            None,
        );
        assert_eq!(f[0].status, crate::doctor::Status::Warn);
        let f = devices(Err("VK_ERROR_INCOMPATIBLE_DRIVER".into()), None);
        assert_eq!(f[0].id, "vulkan-no-gpu");
    }
}
