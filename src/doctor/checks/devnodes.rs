//! `device-nodes`: `/dev/nvidiactl`, `/dev/nvidia<N>`, `/dev/nvidia-uvm`, `/dev/nvidia-modeset`
//! exist once the driver runs, and everyone (mode 0666, the driver's default) or the user's
//! group can open them.

use std::os::unix::fs::MetadataExt;

use super::nvidia_gpus;
use crate::doctor::{Finding, Patient};
use crate::sys::kmod;

/// The name of group `gid` from `ROOT/etc/group`.
fn group_name(host: &Patient, gid: u32) -> Option<String> {
    host.read("/etc/group")?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse() == Ok(gid)).then(|| f[0].to_string())
    })
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let loaded = kmod::loaded_modules(&host.root)
        .ok()
        .flatten()
        .is_some_and(|l| l.iter().any(|m| m.name == "nvidia"));
    let ctl = host.root.path("/dev/nvidiactl");
    if !loaded && !ctl.exists() {
        return Ok(vec![Finding::skip(
            "device-nodes",
            "the nvidia module is not loaded, so no /dev/nvidia* nodes are expected yet",
        )]);
    }
    let gpus = nvidia_gpus(host)
        .into_iter()
        .filter(|g| g.driver.as_deref() == Some("nvidia"))
        .count()
        .max(1);
    let mut required = vec!["/dev/nvidiactl".to_string()];
    required.extend((0..gpus).map(|i| format!("/dev/nvidia{i}")));
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let mut closed = Vec::new();
    let mut present = Vec::new();
    for n in &required {
        match std::fs::metadata(host.root.path(n)) {
            Ok(m) => {
                let mode = m.mode() & 0o777;
                present.push(format!("{n}: mode {mode:o}"));
                if mode & 0o006 != 0o006 {
                    let group = group_name(host, m.gid()).unwrap_or_else(|| m.gid().to_string());
                    closed.push(format!("{n}: mode {mode:o}, group {group}"));
                }
            }
            Err(_) => missing.push(n.clone()),
        }
    }
    if !missing.is_empty() {
        out.push(
            Finding::warn("device-nodes", format!("missing: {}", missing.join(", ")))
                .evidence_all(missing.iter().map(|m| format!("{m}: does not exist")))
                .fix("run nvidia-smi once (it creates them through nvidia-modprobe), or: sudo nvidia-modprobe -c 0 -u"),
        );
    }
    if !closed.is_empty() {
        out.push(
            Finding::warn("device-nodes-permissions", "NVIDIA device nodes are not open to everyone: only their group can use the GPU")
                .evidence_all(closed)
                .fix("add yourself to that group (sudo usermod -aG <group> $USER, then log in again), or restore the driver's default mode 0666 (NVreg_DeviceFileMode)"),
        );
    }
    if missing.is_empty() && out.is_empty() {
        out.push(
            Finding::ok(
                "device-nodes",
                format!("{} present and usable", required.join(", ")),
            )
            .evidence_all(present),
        );
    }
    for (node, why) in [
        ("/dev/nvidia-uvm", "CUDA needs it (Vulkan does not); it appears when nvidia-uvm loads: sudo modprobe nvidia-uvm"),
        ("/dev/nvidia-modeset", "only display/DRM needs it"),
    ] {
        if !host.root.path(node).exists() {
            out.push(Finding::info("device-nodes-optional", format!("{node} is missing: {why}")));
        }
    }
    Ok(out)
}
