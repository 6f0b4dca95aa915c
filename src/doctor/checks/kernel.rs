//! `kernel`: the running kernel's release, its page size (the NVIDIA driver needs 4K pages; a
//! Pi 5 boots a 16K kernel by default) and whether headers for it are installed (needed to build
//! the modules) — asked only where an NVIDIA driver is expected and not already working.

use super::{nvidia_expected, setup_or};
use crate::doctor::{Finding, Patient};
use crate::platform::kernel::{headers_package, major_minor};

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let Some(rel) = host.kernel_release() else {
        return Ok(vec![Finding::skip(
            "kernel",
            "cannot tell the running kernel's release (no /proc/sys/kernel/osrelease)",
        )]);
    };
    let p = host.platform();
    let mut out = Vec::new();
    let nvidia = nvidia_expected(host);
    let mut four_k = true;

    match host.page_size() {
        Some(ps) if ps.bytes == 4096 => out.push(
            Finding::ok("kernel-page-size", format!("kernel {rel} uses 4K pages"))
                .evidence(ps.source),
        ),
        Some(ps) => {
            four_k = false;
            let k = ps.bytes / 1024;
            let f = if nvidia {
                Finding::fail(
                    "kernel-page-size",
                    format!("kernel {rel} uses {k}K pages; the NVIDIA driver needs 4K"),
                )
                .fix(setup_or(
                    host,
                    "boot the 4K kernel (kernel8.img), install its headers and build the modules for it",
                    "boot a kernel built with 4K pages (CONFIG_ARM64_4K_PAGES=y) and reboot",
                ))
            } else {
                Finding::info(
                    "kernel-page-size",
                    format!("kernel {rel} uses {k}K pages: fine without an NVIDIA GPU (AMD GPUs work with it); an NVIDIA GPU needs a 4K-page kernel"),
                )
            };
            out.push(f.evidence(ps.source));
        }
        None => out.push(Finding::skip(
            "kernel-page-size",
            format!("cannot tell the page size of kernel {rel}"),
        )),
    }

    let build = format!("/lib/modules/{rel}/build");
    match host.root.resolve(&build) {
        Some(target) => out.push(
            Finding::ok("kernel-headers", format!("headers for {rel} are installed"))
                .evidence(format!("{build} -> {}", target.display())),
        ),
        None if !nvidia => out.push(Finding::skip(
            "kernel-headers",
            format!("no NVIDIA GPU or module: headers for {rel} are not needed"),
        )),
        None if p.nvidia.working() => out.push(
            Finding::info(
                "kernel-headers",
                format!("no headers for {rel}; the NVIDIA driver is already loaded and working, so they are needed only to rebuild its modules"),
            )
            .evidence(format!("{build} is missing")),
        ),
        None if !four_k => out.push(
            Finding::info(
                "kernel-headers",
                format!("no headers for {rel}; not needed: the modules must be built for a 4K-page kernel, not this one"),
            )
            .evidence(format!("{build} is missing")),
        ),
        None => {
            let pkg = headers_package(&rel);
            out.push(
                Finding::warn(
                    "kernel-headers",
                    format!("no headers for the running kernel {rel}: the NVIDIA modules cannot be built for it"),
                )
                .evidence(format!("{build} is missing"))
                .fix(setup_or(
                    host,
                    &format!("install {pkg} and build the modules"),
                    &format!("sudo apt install {pkg} build-essential"),
                )),
            );
        }
    }

    if let Some((maj, min)) = major_minor(&rel) {
        if (maj, min) >= (6, 18) && p.is_pi5_family() {
            out.push(
                Finding::info(
                    "kernel-pcie-regression",
                    format!("kernel {rel} is 6.18 or newer: these kernels have a known PCIe regression on the Pi's external port (devices failing to probe with error -12)"),
                )
                .fix("if a PCIe device fails to probe, pin a known-good 6.12.y kernel and hold it: sudo apt-mark hold linux-image-rpi-v8"),
            );
        }
    }
    Ok(out)
}
