//! Device choice (on synthetic listings and on the real lavapipe), and a check that the
//! validation plumbing really reports misuse, so "no errors" in the other tests means something.

use super::Gpu;
use crate::engine::vulkan::buffer::{Buffer, MemKind};
use crate::engine::vulkan::device::{choose, list_devices_with, DeviceInfo, DeviceKind};
use crate::engine::vulkan::VkError;

fn info(index: usize, name: &str, kind: DeviceKind, vendor: u32, mib: u64) -> DeviceInfo {
    DeviceInfo {
        index,
        name: name.into(),
        kind,
        vendor_id: vendor,
        device_id: 0,
        api_version: "1.3.0".into(),
        driver: String::new(),
        memory_mib: mib,
        subgroup_size: 32,
        max_storage_buffer_range: 1 << 30,
        problem: None,
        auto_ok: !(kind == DeviceKind::Cpu || vendor == 0x14E4),
        chosen: false,
        reason: String::new(),
    }
}

#[test]
fn automatic_choice_prefers_discrete_and_never_takes_v3d_or_cpu() {
    let mut devs = vec![
        info(0, "V3D 7.1", DeviceKind::Integrated, 0x14E4, 4096),
        info(
            1,
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            DeviceKind::Cpu,
            0x10005,
            2048,
        ),
        info(2, "Intel UHD", DeviceKind::Integrated, 0x8086, 8192),
        info(3, "NVIDIA RTX A4000", DeviceKind::Discrete, 0x10DE, 16384),
    ];
    assert_eq!(choose(&mut devs, None).unwrap(), 3);
    assert!(devs[3].chosen && !devs[2].chosen);
    assert!(devs[0].reason.contains("V3D"), "{}", devs[0].reason);
    assert!(
        devs[1].reason.contains("CPU implementation"),
        "{}",
        devs[1].reason
    );

    let mut only_pi = vec![devs[0].clone(), devs[1].clone()];
    let err = choose(&mut only_pi, None).unwrap_err();
    assert!(matches!(err, VkError::NoDevice(_)), "{err}");
    assert!(err.to_string().contains("--list-devices"), "{err}");

    // Explicit choice by name or index takes even a CPU implementation.
    assert_eq!(choose(&mut devs, Some("LLVMPIPE")).unwrap(), 1);
    assert_eq!(choose(&mut devs, Some("0")).unwrap(), 0);
    let err = choose(&mut devs, Some("radeon")).unwrap_err();
    assert!(
        err.to_string().contains("no device matches 'radeon'"),
        "{err}"
    );

    devs[3].problem = Some("has no compute queue".into());
    let err = choose(&mut devs, Some("nvidia")).unwrap_err();
    assert!(err.to_string().contains("has no compute queue"), "{err}");
}

#[test]
fn lavapipe_is_listed_but_only_chosen_when_asked() {
    let devs = list_devices_with(None, &Default::default()).unwrap();
    let lp = devs
        .iter()
        .find(|d| d.name.contains("llvmpipe"))
        .expect("lavapipe installed");
    assert_eq!(lp.kind, DeviceKind::Cpu);
    assert!(!lp.chosen && !lp.auto_ok, "{lp:?}");
    assert!(lp.problem.is_none(), "{lp:?}");
    let devs = list_devices_with(Some("llvmpipe"), &Default::default()).unwrap();
    assert!(devs.iter().any(|d| d.chosen && d.name.contains("llvmpipe")));
}

#[test]
fn validation_layer_reports_misuse() {
    let gpu = Gpu::new();
    let b = Buffer::new(&gpu.dev, 64, MemKind::Device, "test").unwrap();
    // A copy past the end of the destination: invalid usage the layer must report.
    let src = Buffer::new(&gpu.dev, 1024, MemKind::Upload, "test").unwrap();
    let mut cmd = crate::engine::vulkan::command::CmdBuffer::new(&gpu.dev).unwrap();
    cmd.begin(false).unwrap();
    cmd.copy(&src, 0, &b, 0, 1024);
    cmd.end().unwrap();
    let errs = gpu.dev.take_validation_errors();
    assert!(
        !errs.is_empty(),
        "the validation layer did not report an out-of-range copy"
    );
}
