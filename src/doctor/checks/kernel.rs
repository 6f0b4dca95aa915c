//! `kernel`: the running kernel's release, its page size (the NVIDIA driver needs 4K pages; a
//! Pi 5 boots a 16K kernel by default) and whether headers for it are installed (needed to build
//! the modules).

use super::{board, nvidia_expected};
use crate::doctor::{Finding, Host};

const FIX_PAGE: &str = "echo 'kernel=kernel8.img' | sudo tee -a /boot/firmware/config.txt && sudo apt install linux-headers-rpi-v8 && sudo reboot; then rebuild the modules: sudo pigpu setup";

/// "6.18.3+rpt-rpi-v8" → (6, 18).
pub fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The headers package for a Pi kernel flavour.
fn headers_package(release: &str) -> String {
    if release.ends_with("-rpi-v8") {
        "linux-headers-rpi-v8".into()
    } else if release.ends_with("-rpi-2712") {
        "linux-headers-rpi-2712".into()
    } else {
        format!("linux-headers-{release}")
    }
}

pub fn run(host: &Host) -> anyhow::Result<Vec<Finding>> {
    let Some(rel) = host.kernel_release() else {
        return Ok(vec![Finding::skip(
            "kernel",
            "cannot tell the running kernel's release (no /proc/sys/kernel/osrelease)",
        )]);
    };
    let mut out = Vec::new();
    let nvidia = nvidia_expected(host);

    match host.page_size() {
        Some((4096, src)) => out.push(
            Finding::ok("kernel-page-size", format!("kernel {rel} uses 4K pages")).evidence(src),
        ),
        Some((size, src)) => {
            let k = size / 1024;
            let f = if nvidia {
                Finding::fail(
                    "kernel-page-size",
                    format!("kernel {rel} uses {k}K pages; the NVIDIA driver needs 4K"),
                )
                .fix(FIX_PAGE)
            } else {
                Finding::info(
                    "kernel-page-size",
                    format!("kernel {rel} uses {k}K pages: fine for AMD GPUs; an NVIDIA GPU needs the 4K kernel (kernel8.img)"),
                )
            };
            out.push(f.evidence(src));
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
        None => {
            let pkg = headers_package(&rel);
            out.push(
                Finding::warn(
                    "kernel-headers",
                    format!("no headers for the running kernel {rel}: the NVIDIA modules cannot be built for it"),
                )
                .evidence(format!("{build} is missing"))
                .fix(format!("sudo apt install {pkg} build-essential")),
            );
        }
    }

    if let Some((maj, min)) = major_minor(&rel) {
        if (maj, min) >= (6, 18) && board(host).0.is_pi5_family() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_packages() {
        assert_eq!(major_minor("6.12.47+rpt-rpi-v8"), Some((6, 12)));
        assert_eq!(major_minor("6.18.1"), Some((6, 18)));
        assert_eq!(major_minor("garbage"), None);
        assert_eq!(
            headers_package("6.12.47+rpt-rpi-2712"),
            "linux-headers-rpi-2712"
        );
        assert_eq!(
            headers_package("6.1.0-56-amd64"),
            "linux-headers-6.1.0-56-amd64"
        );
    }
}
