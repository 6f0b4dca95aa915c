//! `pcie`: the NVIDIA GPUs on the PCI bus (via udev on the live system), the port they hang off,
//! their link (current speed/width against what both ends and config.txt allow), their BARs
//! (assigned or not: the Pi's window is small) and AER error counters.

use super::boot;
use crate::doctor::{Finding, Patient};
use crate::sys::pci::{generation, PciDevice};

const FIX_LINK_DOWN: &str = "enable the port ('dtparam=pciex1' in /boot/firmware/config.txt on a Pi 5), try 'dtparam=pciex1_gen=2', check the ribbon cable / riser and its power, and power the GPU on before the Pi";
const FIX_LINK_DOWN_PC: &str = "reseat the card, check its power cables and any riser, and check that the slot is enabled in the firmware (BIOS) setup";
const FIX_DEGRADED_PC: &str = "reseat the card or riser and check its power; check the slot's generation setting in the firmware (BIOS) setup";
const FIX_BAR_PC: &str = "turn on 'Above 4G decoding' in the firmware (BIOS) setup, and Resizable BAR only where the firmware supports it";
const FIX_DEGRADED: &str = "reseat or replace the cable/riser and check its power; if Gen 3 is forced try 'dtparam=pciex1_gen=2'; if it started after a kernel update, pin a known-good 6.12.y kernel";

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn describe(d: &PciDevice) -> String {
    let mut s = format!("{} ({})", d.address, d.id());
    if let Some(c) = &d.controller {
        s.push_str(&format!(" on {c}"));
    }
    s
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let devices = match host.pci_devices() {
        Ok(d) => d,
        Err(e) => {
            return Ok(vec![Finding::skip(
                "pcie",
                format!("cannot enumerate PCI devices: {e}"),
            )])
        }
    };
    if devices.is_empty()
        && matches!(host.pci_source, crate::sys::pci::PciSource::Sysfs(_))
        && !host.root.exists("/sys/bus/pci")
    {
        return Ok(vec![Finding::skip(
            "pcie",
            "no PCI information under this root (no /sys/bus/pci)",
        )]);
    }
    let pi = host.platform().is_raspberry_pi();
    let gpus: Vec<&PciDevice> = devices.iter().filter(|d| d.is_nvidia_gpu()).collect();
    if gpus.is_empty() {
        return Ok(vec![no_nvidia_gpu(host, devices, pi)]);
    }
    let configured = boot::configured_gen(host);
    let mut out = Vec::new();
    for g in gpus {
        out.extend(gpu(devices, g, configured, pi));
    }
    Ok(out)
}

/// With no NVIDIA GPU on the bus: another display device is only noted; else the link is down,
/// with what was enumerated (and, on a Pi 5, what sits behind the external port).
fn no_nvidia_gpu(host: &Patient, devices: &[PciDevice], pi: bool) -> Finding {
    let others: Vec<&PciDevice> = devices
        .iter()
        .filter(|d| d.is_display() && !d.is_nvidia())
        .collect();
    if !others.is_empty() {
        return Finding::info(
            "pcie-gpu",
            format!(
                "no NVIDIA GPU, but another display device: {}; the NVIDIA checks do not apply to it",
                others.iter().map(|d| describe(d)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let on_port: Vec<&PciDevice> = devices
        .iter()
        .filter(|d| {
            d.controller.as_deref() == Some("1000110000.pcie")
                && Some(d.address.as_str()) != d.root_port.as_deref()
        })
        .collect();
    let mut f = Finding::fail(
        "pcie-link-down",
        "no NVIDIA GPU (vendor 0x10de) is on the PCI bus",
    )
    .fix(if pi { FIX_LINK_DOWN } else { FIX_LINK_DOWN_PC });
    f.evidence.push(format!(
        "{} PCI functions enumerated, none with vendor 0x10de",
        devices.len()
    ));
    if host.platform().is_pi5_family()
        || devices
            .iter()
            .any(|d| d.controller.as_deref() == Some("1000110000.pcie"))
    {
        f.evidence.push(if on_port.is_empty() {
            "nothing enumerated behind the external port (1000110000.pcie): the link never came up"
                .into()
        } else {
            format!(
                "behind the external port: {}",
                on_port
                    .iter()
                    .map(|d| describe(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    f
}

/// One NVIDIA GPU's findings: dead (config space reads back all ones, or the ids do) and
/// nothing more, or present with its link, BARs and AER errors.
fn gpu(all: &[PciDevice], g: &PciDevice, configured: Option<u32>, pi: bool) -> Vec<Finding> {
    let name = describe(g);
    if g.config_all_ones || g.vendor == 0xffff {
        return vec![
            Finding::fail("pcie-device-dead", format!("{name} reads back all ones: it dropped off the bus"))
                .evidence(format!("{}/config: ff ff ff ff", g.syspath.display()))
                .fix("power everything off, check the GPU's PCIe power cables and the riser/cable, switch the GPU's power supply on before the Pi"),
        ];
    }
    let mut out = vec![Finding::ok(
        "pcie-gpu",
        format!(
            "NVIDIA GPU {name}, driver {}",
            g.driver.as_deref().unwrap_or("none")
        ),
    )];
    out.extend(link(all, g, configured, pi));
    out.extend(bars(g, pi));
    out.extend(aer_errors(g, &name, pi));
    out
}

/// The GPU's AER error counters: fatal or non-fatal ones a warning, corrected ones (the link
/// retried) information; `None` without counters or errors.
fn aer_errors(g: &PciDevice, name: &str, pi: bool) -> Option<Finding> {
    let aer = g.aer.as_ref()?;
    if aer.fatal + aer.nonfatal > 0 {
        Some(
            Finding::warn(
                "pcie-aer-errors",
                format!(
                    "{name} reported {} fatal and {} non-fatal PCIe errors",
                    aer.fatal, aer.nonfatal
                ),
            )
            .evidence(format!(
                "{}/aer_dev_fatal, aer_dev_nonfatal",
                g.syspath.display()
            ))
            .fix(if pi { FIX_DEGRADED } else { FIX_DEGRADED_PC }),
        )
    } else if aer.correctable > 0 {
        Some(
            Finding::info(
                "pcie-aer-errors",
                format!("{name} reported {} corrected PCIe errors (the link retried; many of them point at the cable)", aer.correctable),
            )
            .evidence(format!("{}/aer_dev_correctable: TOTAL_ERR_COR {}", g.syspath.display(), aer.correctable)),
        )
    } else {
        None
    }
}

/// Compares the GPU's link with the most both ends allow (the upstream port's maximum, and the
/// generation config.txt forces on the Pi's port).
fn link(all: &[PciDevice], g: &PciDevice, configured: Option<u32>, pi: bool) -> Vec<Finding> {
    let l = &g.link;
    let Some(cur) = l.current_speed else {
        return vec![Finding::skip(
            "pcie-link",
            format!("{}: the kernel reports no link speed", g.address),
        )];
    };
    let up = g
        .upstream
        .as_deref()
        .and_then(|a| all.iter().find(|d| d.address == a));
    // What the link could do is the lower of both ends' maxima. Without the upstream end's
    // numbers nothing can be said (a x16 Gen 4 card on the Pi's x1 port is normal), so the
    // current values stand.
    let best = match up.and_then(|u| u.link.max_speed) {
        Some(m) => l.max_speed.unwrap_or(m).min(m),
        None => cur,
    };
    let width = l.current_width.unwrap_or(1);
    let best_width = match up.and_then(|u| u.link.max_width) {
        Some(w) => l.max_width.unwrap_or(w).min(w),
        None => width,
    };
    let on_pi_port = g.controller.as_deref() == Some("1000110000.pcie");
    let mut evidence = vec![format!(
        "{}: current_link_speed {cur} GT/s x{width}, max_link_speed {} GT/s x{}",
        g.syspath.display(),
        l.max_speed.map(|s| s.to_string()).unwrap_or("?".into()),
        l.max_width.map(|s| s.to_string()).unwrap_or("?".into()),
    )];
    if let Some(u) = up {
        evidence.push(format!(
            "upstream {}: max_link_speed {} GT/s x{}",
            u.address,
            u.link
                .max_speed
                .map(|s| s.to_string())
                .unwrap_or("?".into()),
            u.link
                .max_width
                .map(|s| s.to_string())
                .unwrap_or("?".into()),
        ));
    }
    let gen = generation(cur);
    let mut problems = Vec::new();
    if cur + 0.01 < best {
        problems.push(format!(
            "runs at Gen {gen} ({cur} GT/s) although both ends can do Gen {} ({best} GT/s)",
            generation(best)
        ));
    }
    if let Some(want) = configured.filter(|_| on_pi_port) {
        if gen < want && generation(best) >= want {
            // Already covered by the comparison above.
        } else if gen < want {
            problems.push(format!(
                "runs at Gen {gen} although config.txt asks for Gen {want}"
            ));
            evidence.push(format!("config.txt: dtparam=pciex1_gen={want}"));
        }
    }
    if width < best_width {
        problems.push(format!(
            "runs at x{width} although both ends can do x{best_width}"
        ));
    }
    if problems.is_empty() {
        vec![Finding::ok(
            "pcie-link",
            format!(
                "{}: link at Gen {gen} ({cur} GT/s) x{width}{}",
                g.address,
                if up.is_some_and(|u| u.link.max_speed.is_some()) {
                    ", the most this port allows"
                } else {
                    " (the upstream port's maximum is unknown)"
                }
            ),
        )
        .evidence_all(evidence)]
    } else {
        vec![Finding::warn(
            "pcie-link-degraded",
            format!("{}: the link {}", g.address, problems.join("; ")),
        )
        .evidence_all(evidence)
        .fix(if pi { FIX_DEGRADED } else { FIX_DEGRADED_PC })]
    }
}

fn bars(g: &PciDevice, pi: bool) -> Vec<Finding> {
    let unassigned: Vec<String> = g
        .bars
        .iter()
        .filter(|b| b.index <= 5 && b.is_unassigned())
        .map(|b| {
            format!(
                "BAR{} ({}{}{}): no address assigned",
                b.index,
                mib(b.size()),
                if b.is_64bit() { ", 64-bit" } else { "" },
                if b.is_prefetchable() {
                    ", prefetchable"
                } else {
                    ""
                },
            )
        })
        .collect();
    if !unassigned.is_empty() {
        return vec![Finding::fail(
            "pcie-bar-space",
            format!("{}: {} BAR(s) did not fit in the {}PCIe window", g.address, unassigned.len(), if pi { "Pi's " } else { "" }),
        )
        .evidence_all(unassigned)
        .fix(if !pi { FIX_BAR_PC } else {"the Pi's PCIe window cannot hold a resized or 64 GB BAR: keep NVreg_EnableResizableBar=0, turn Resizable BAR off for the card, put pro cards (RTX A/Quadro) in graphics display mode, and put fewer GPUs behind one switch"})];
    }
    let assigned: Vec<String> = g
        .bars
        .iter()
        .filter(|b| b.index <= 5 && b.is_mem() && b.size() > 0)
        .map(|b| format!("BAR{} {} at {:#x}", b.index, mib(b.size()), b.start))
        .collect();
    if assigned.is_empty() {
        return Vec::new();
    }
    vec![
        Finding::ok("pcie-bars", format!("{}: all BARs assigned", g.address))
            .evidence_all(assigned),
    ]
}
