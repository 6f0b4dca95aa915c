//! `boot-config`: the Pi firmware's `config.txt` as the platform model parsed it (section
//! filters resolved once, the same reading setup uses) — the external PCIe port
//! (`dtparam=pciex1`), its generation (`pciex1_gen`) and the kernel image (`kernel=kernel8.img`
//! for 4K pages).

use super::setup_or;
use crate::doctor::{Finding, Patient};
use crate::platform::{Board, ConfigTxt};

/// The PCIe generation config.txt asks for on the external port, if any.
pub fn configured_gen(host: &Patient) -> Option<u32> {
    host.platform().config.as_ref()?.pciex1_gen()
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let p = host.platform();
    let b = p.board;
    if !p.is_raspberry_pi() {
        return Ok(vec![Finding::skip(
            "boot-config",
            "not a Raspberry Pi: config.txt does not apply",
        )]);
    }
    let Some(c) = &p.config else {
        return Ok(vec![if p.is_pi5_family() {
            Finding::warn(
                "boot-config",
                "no config.txt found (looked in /boot/firmware and /boot)",
            )
            .fix("is the boot partition mounted? (mount | grep /boot/firmware)")
        } else {
            Finding::skip("boot-config", "no config.txt found")
        }]);
    };
    let mut out = Vec::new();
    let path = &c.path;
    let uncertain = |key: &str| -> Vec<String> {
        c.uncertain(key)
            .iter()
            .map(|s| format!("{} (under a filter pigpu cannot evaluate)", c.cite(s)))
            .collect()
    };

    // The external port: off by default on a Pi 5 (unless a HAT+ asks for it), on for a CM5 IO board.
    match (c.pciex1(), b) {
        (Some((true, s)), _) => out.push(
            Finding::ok("pcie-port", "the external PCIe port is enabled (dtparam=pciex1)")
                .evidence(c.cite(s)),
        ),
        (Some((false, s)), _) => out.push(
            Finding::fail("pcie-port", "the external PCIe port is switched off in config.txt")
                .evidence(c.cite(s))
                .fix(setup_or(host, "turn the port on (dtparam=pciex1)", &format!("set 'dtparam=pciex1' in {path} and reboot"))),
        ),
        (None, Board::Cm5) => out.push(Finding::ok(
            "pcie-port",
            "CM5: the external PCIe port is on by default",
        )),
        (None, _) => out.push(
            Finding::warn(
                "pcie-port",
                "config.txt does not enable the external PCIe port (dtparam=pciex1); a Pi 5 only turns it on by itself for HAT+ boards",
            )
            .evidence(format!("{path}: no dtparam=pciex1 that applies"))
            .evidence_all(uncertain("pciex1"))
            .fix(setup_or(host, "turn the port on (dtparam=pciex1)", &format!("echo 'dtparam=pciex1' | sudo tee -a {path} && sudo reboot"))),
        ),
    }

    if let Some((v, s)) = c.dtparam("pciex1_gen") {
        let f = match v.as_str() {
            "3" => Finding::info(
                "pcie-gen",
                "PCIe Gen 3 is forced: faster, but not certified; use Gen 2 if the link is flaky",
            ),
            "1" | "2" => Finding::ok("pcie-gen", format!("PCIe Gen {v} is configured")),
            other => Finding::warn(
                "pcie-gen",
                format!("pciex1_gen={other} is not a generation the Pi supports (1, 2 or 3)"),
            )
            .fix(format!("use 'dtparam=pciex1_gen=2' (or 3) in {path}")),
        };
        out.push(f.evidence(c.cite(s)));
    }

    out.extend(kernel_image(host, c, b));

    if let Some(s) = c
        .applying()
        .find(|s| s.key == "dtoverlay" && s.value.starts_with("pcie-32bit-dma"))
    {
        out.push(
            Finding::info(
                "pcie-32bit-dma",
                "dtoverlay=pcie-32bit-dma-pi5 is set: NVIDIA GPUs do not need it",
            )
            .evidence(c.cite(s)),
        );
    }
    Ok(out)
}

/// `boot-kernel-image`: the image that boots must be the 4K one for the NVIDIA driver.
fn kernel_image(host: &Patient, c: &ConfigTxt, b: Board) -> Option<Finding> {
    let image = c.kernel_image(b);
    let fix = || {
        setup_or(
            host,
            "boot the 4K kernel (kernel=kernel8.img) and build the modules for it",
            &format!(
                "set 'kernel=kernel8.img' in {} (under [all] or [pi5]) and reboot",
                c.path
            ),
        )
    };
    let evidence = c
        .uncertain("kernel")
        .iter()
        .map(|s| format!("{} (under a filter pigpu cannot evaluate)", c.cite(s)))
        .collect::<Vec<_>>();
    Some(match c.get("kernel") {
        Some(s) if s.value == "kernel8.img" => Finding::ok(
            "boot-kernel-image",
            "boots kernel8.img (4K pages, as the NVIDIA driver needs)",
        )
        .evidence(c.cite(s)),
        Some(s) => Finding::warn(
            "boot-kernel-image",
            format!("boots {}; the NVIDIA driver needs kernel8.img (4K pages)", s.value),
        )
        .evidence(c.cite(s))
        .fix(fix()),
        None if b.is_pi5_family() => Finding::warn(
            "boot-kernel-image",
            format!("no kernel= line applies: a Pi 5 boots {image} (16K pages); the NVIDIA driver needs kernel8.img"),
        )
        .evidence(format!("{}: no kernel= line that applies", c.path))
        .evidence_all(evidence)
        .fix(fix()),
        None => return None,
    })
}
