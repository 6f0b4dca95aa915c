//! `pigpu doctor` end to end: every real log in tests/fixtures/doctor/real-logs gives its
//! findings (and healthy ones no alarm), also when mangled the way pasted logs are; fake roots
//! for a healthy Pi 5 + NVIDIA system and one broken thing at a time; PCIe enumeration through
//! the real udev library under `umockdev-run`; and empty / garbage / unreadable inputs.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fake_root::{
    check_real_log, doctor, exit_code, findings, has, problems, Fake, GPU, PORT,
};
use crate::util::{pigpu, root as project_root};

fn real_logs() -> PathBuf {
    project_root().join("tests/fixtures/doctor/real-logs")
}

/// What each real log must give: (file prefix, expected (id, status), problems allowed beyond those).
const EXPECTED: &[(&str, &[(&str, &str)])] = &[
    (
        "01-",
        &[
            ("nvidia-drm-symbols", "warn"),
            ("kernel-tainted", "info"),
            ("driver-module", "info"),
        ],
    ),
    ("02-", &[("nouveau-bound", "fail")]),
    ("03-", &[("gpu-visible", "ok")]),
    ("04-", &[("gpu-visible", "ok")]),
    ("06-", &[("kernel-page-size", "fail")]),
    ("07-", &[("driver-unpatched", "fail")]),
    ("11-", &[("gpu-inference", "ok")]),
    (
        "13-",
        &[("gpu-inference", "ok"), ("vulkan-devices", "info")],
    ),
    ("17-", &[("gpu-inference", "ok")]),
    ("18-", &[("pcie-gen", "info")]),
    ("19-", &[("pcie-link", "ok")]),
    ("21-", &[("pcie-bar-space", "fail")]),
    ("24-", &[("pcie-gpu", "ok")]),
    (
        "26-",
        &[
            ("driver-proprietary", "fail"),
            ("platform-unsupported", "warn"),
        ],
    ),
    ("30-", &[("gpu-no-gsp", "fail")]),
    ("31-", &[("vulkan-icd-broken", "fail")]),
    ("32-", &[("vram-exhausted", "fail")]),
    ("34-", &[("cpu-fallback", "warn")]),
];

fn expected_for(name: &str) -> &'static [(&'static str, &'static str)] {
    EXPECTED
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .unwrap_or_else(|| panic!("real log {name} has no expectation in tests/it/doctor.rs"))
        .1
}

fn log_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(real_logs())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    assert_eq!(v.len(), EXPECTED.len(), "every real log has an expectation");
    v
}

#[test]
fn every_real_log_gives_its_findings_and_no_false_alarm() {
    for path in log_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let f = check_real_log(&path, expected_for(&name));
        // The healthy logs raise no warning or failure.
        if name.contains("HEALTHY") {
            assert!(problems(&f).is_empty(), "{name}: false alarm {f:?}");
        }
    }
}

/// The same log as users paste it: CRLF, colour codes, journalctl prefixes instead of dmesg
/// timestamps, `> ` quoting, and unrelated lines around it.
fn mangle(text: &str, how: &str) -> String {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mapped: Vec<String> = lines
        .iter()
        .map(|l| match how {
            "ansi" => format!("\x1b[1;32m{l}\x1b[0m"),
            "journal" => {
                let t = l.trim_start();
                if t.starts_with('[')
                    && t.contains("] ")
                    && t[1..]
                        .trim_start()
                        .starts_with(|c: char| c.is_ascii_digit())
                {
                    let rest = &t[t.find("] ").unwrap() + 2..];
                    format!("Nov 26 16:52:14 pi5 kernel: {rest}")
                } else {
                    l.clone()
                }
            }
            "quoted" => format!("> {l}"),
            _ => l.clone(),
        })
        .collect();
    let body = mapped.join("\n");
    match how {
        "crlf" => body.replace('\n', "\r\n") + "\r\n",
        "noise" => format!(
            "Nov 26 16:50:01 pi5 systemd[1]: Started session-3.scope.\nrandom text 0xffff 1234 GT/s\n{body}\nNov 26 16:55:00 pi5 CRON[812]: (root) CMD (true)\n"
        ),
        _ => body + "\n",
    }
}

#[test]
fn pasted_variants_of_every_real_log_give_the_same_findings() {
    for path in log_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let (_, json, _, _) = doctor(&["--json", "--log", path.to_str().unwrap()], None);
        let base: BTreeSet<_> = findings(&json).into_iter().collect();
        for how in ["crlf", "ansi", "journal", "quoted", "noise"] {
            let m = mangle(&text, how);
            let (_, json, stdout, _) = doctor(&["--json", "--log", "-"], Some(m.as_bytes()));
            let got: BTreeSet<_> = findings(&json).into_iter().collect();
            assert_eq!(got, base, "{name} ({how}) differs:\n{stdout}");
        }
    }
}

#[test]
fn several_logs_at_once_and_the_human_report() {
    let a = real_logs().join("07-a400-pi5-565.77-open-fwsec-wpr2-RmInitAdapter-failed.dmesg.txt");
    let b = real_logs().join("03-a4000-cm5-patched-open-580.95.05-nvidia-smi-HEALTHY.txt");
    let out = pigpu()
        .args([
            "doctor",
            "--log",
            a.to_str().unwrap(),
            "--log",
            b.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[✗] driver-unpatched"), "{text}");
    assert!(text.contains("[✓] gpu-visible"), "{text}");
    // The benign "Chipset not recognized … 0x2712" line in 07 is never a finding (issue 19).
    assert!(!text.contains("chipset-unrecognized"), "{text}");
    assert!(
        text.contains("no initialized WPR2 found"),
        "evidence shown:\n{text}"
    );
    assert!(text.contains("fix: "), "{text}");
    // Piped, not a terminal: no colour codes.
    assert!(!text.contains('\x1b'));
    // Two module versions in two logs of different machines are not compared with each other
    // beyond what each log says: 07's 565.77 banner and 03's nvidia-smi 580.95.05 are separate.
    assert!(!text.contains("driver-version-mismatch"), "{text}");

    // Several files after one flag (a shell glob) read the same.
    let (code, json, _, _) = doctor(
        &["--json", "--log", a.to_str().unwrap(), b.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 1);
    let f = findings(&json);
    assert!(
        has(&f, "driver-unpatched", "fail") && has(&f, "gpu-visible", "ok"),
        "{f:?}"
    );
}

#[test]
fn empty_garbage_and_unreadable_logs_still_report() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    let (code, json, _, _) = doctor(&["--json", "--log", empty.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert!(has(&findings(&json), "log-input", "info"));

    let garbage = dir.path().join("garbage.bin");
    let bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&garbage, &bytes).unwrap();
    let (code, json, _, _) = doctor(&["--json", "--log", garbage.to_str().unwrap()], None);
    assert_eq!(code, 0, "garbage has no known signature");
    assert!(!findings(&json).is_empty());

    let missing = dir.path().join("nope.txt");
    let (code, json, _, stderr) = doctor(&["--json", "--log", missing.to_str().unwrap()], None);
    assert_eq!(code, 2, "an unreadable input means doctor could not run");
    assert!(
        has(&findings(&json), "log-input", "fail"),
        "the report still comes out"
    );
    assert!(stderr.contains("nope.txt"), "{stderr}");

    let (code, _, _, stderr) = doctor(&["--check", "frobnicate"], None);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("frobnicate") && stderr.contains("pcie"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fake roots

const REL: &str = "6.12.47+rpt-rpi-v8";
const VER: &str = "580.95.05";
pub(crate) fn depmod() -> Option<&'static str> {
    let found = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() {
        if std::env::var_os("PIGPU_REQUIRE_MODELS").is_some() {
            panic!("depmod (package kmod) is required for the doctor fake-root tests");
        }
        eprintln!("SKIPPING doctor fake-root tests: depmod not installed (apt-get install kmod)");
    }
    found
}

impl Fake {
    fn module(&self, file: &str, name: &str, license: &str) {
        let elf = ::pigpu::sys::kmod::fake_module_elf(&[
            ("version", VER),
            ("license", license),
            ("name", name),
            (
                "vermagic",
                &format!("{REL} SMP preempt mod_unload modversions aarch64"),
            ),
        ]);
        self.write(&format!("lib/modules/{REL}/{file}"), elf);
    }
    fn depmod(&self) {
        let st = Command::new(depmod().unwrap())
            .args(["-b", self.dir.path().to_str().unwrap(), REL])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// A healthy Raspberry Pi 5 with an RTX A4000 and the patched open driver, as far as files
    /// go; `None` (the test skips) where depmod is not installed to index its modules.
    fn healthy() -> Option<Fake> {
        depmod()?;
        let f = Fake::new();
        f.pi5(REL, "4K");
        f.write(
            "boot/firmware/config.txt",
            "# pigpu test\n[all]\ndtparam=audio=on\n[pi5]\ndtparam=pciex1\n[all]\nkernel=kernel8.img\n",
        );
        fs::create_dir_all(f.p(&format!("usr/src/linux-headers-{REL}"))).unwrap();
        f.link(
            &format!("lib/modules/{REL}/build"),
            &format!("/usr/src/linux-headers-{REL}"),
        );
        for (file, name) in [
            ("updates/dkms/nvidia.ko", "nvidia"),
            ("updates/dkms/nvidia-uvm.ko", "nvidia_uvm"),
            ("updates/dkms/nvidia-modeset.ko", "nvidia_modeset"),
            ("updates/dkms/nvidia-drm.ko", "nvidia_drm"),
        ] {
            f.module(file, name, "Dual MIT/GPL");
        }
        f.module(
            "kernel/drivers/gpu/drm/nouveau/nouveau.ko",
            "nouveau",
            "Dual MIT/GPL",
        );
        f.depmod();
        f.write(
            "etc/modprobe.d/blacklist-nouveau.conf",
            "blacklist nouveau\noptions nouveau modeset=0\n",
        );
        f.write(
            "proc/modules",
            "nvidia_uvm 1892352 0 - Live 0x0000000000000000 (O)\nnvidia_modeset 1638400 0 - Live 0x0000000000000000 (O)\nnvidia 8437760 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (O)\n",
        );
        f.write("sys/module/nvidia/version", format!("{VER}\n"));
        f.write(
            "proc/driver/nvidia/version",
            format!("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  {VER}  Release Build  (dvs-builder@U22-I3-AF08-06-3)  Tue Sep 23 09:46:53 UTC 2025\nGCC version:  gcc version 14.2.0 (Debian 14.2.0-19)\n"),
        );
        f.write(&format!("lib/firmware/nvidia/{VER}/gsp_ga10x.bin"), "fw");
        f.write(&format!("lib/firmware/nvidia/{VER}/gsp_tu10x.bin"), "fw");
        let lib = "usr/lib/aarch64-linux-gnu";
        for l in [
            format!("libnvidia-ml.so.{VER}"),
            format!("libGLX_nvidia.so.{VER}"),
            format!("libnvidia-glcore.so.{VER}"),
            "libvulkan.so.1".into(),
            "libX11.so.6".into(),
            "libXext.so.6".into(),
        ] {
            f.write(&format!("{lib}/{l}"), "elf");
        }
        f.link(
            &format!("{lib}/libGLX_nvidia.so.0"),
            &format!("libGLX_nvidia.so.{VER}"),
        );
        f.link(
            &format!("{lib}/libnvidia-ml.so.1"),
            &format!("libnvidia-ml.so.{VER}"),
        );
        f.nvidia_icd();
        f.nvidia_dev_nodes(&["nvidiactl", "nvidia0", "nvidia-uvm", "nvidia-modeset"]);
        f.pi5_gpu(
            &[
                ("enable", "1"),
                (
                    "resource",
                    "0x0000001b00000000 0x0000001b00ffffff 0x0000000000040200\n0x0000001800000000 0x000000180fffffff 0x000000000014220c\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n0x0000001810000000 0x0000001811ffffff 0x000000000014220c",
                ),
            ],
            Some("nvidia"),
        );
        f.write(
            &format!("{GPU}/config"),
            [0xde, 0x10, 0xb0, 0x24, 0x06, 0x04],
        );
        f.write(
            "var/log/kern.log",
            format!("Nov 26 16:50:01 cm5 kernel: [    0.49] brcm-pcie 1000110000.pcie: link up, 5.0 GT/s PCIe x1 (!SSC)\nNov 26 16:50:05 cm5 kernel: [    5.65] NVRM: Chipset not recognized (vendor ID 0x14e4, device ID 0x2712)\nNov 26 16:50:05 cm5 kernel: [    3.36] NVRM: loading NVIDIA UNIX Open Kernel Module for aarch64  {VER}  Release Build\n"),
        );
        f.write(
            "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
            "0\n",
        );
        Some(f)
    }
}

#[test]
fn a_healthy_fake_pi_passes_every_check() {
    let Some(f) = Fake::healthy() else {
        return;
    };
    let (code, got, stdout) = f.run();
    assert!(
        problems(&got).is_empty(),
        "healthy root raised problems:\n{stdout}"
    );
    assert_eq!(code, 0);
    for id in [
        "platform",
        "kernel-page-size",
        "kernel-headers",
        "pcie-port",
        "boot-kernel-image",
        "pcie-gpu",
        "pcie-link",
        "pcie-bars",
        "driver-modules",
        "driver-open",
        "driver-loaded",
        "driver-version",
        "gsp-firmware",
        "gpu-driver-bound",
        "nouveau-bound",
        "device-nodes",
        "kernel-log",
        "vulkan-loader",
        "vulkan-icd",
        "power-throttling",
    ] {
        assert!(has(&got, id, "ok"), "expected {id}=ok:\n{stdout}");
    }
    // The log's benign "Chipset not recognized … 0x2712" line gives no finding.
    assert!(
        !got.iter().any(|(id, _)| id == "chipset-unrecognized"),
        "{stdout}"
    );
}

/// One broken thing at a time: (what, change, expected finding id, status).
type Breakage = (&'static str, fn(&Fake), &'static str, &'static str);

const BREAKAGES: &[Breakage] = &[
    (
        "16K kernel",
        |f| f.write(&format!("boot/config-{REL}"), "CONFIG_ARM64_16K_PAGES=y\n"),
        "kernel-page-size",
        "fail",
    ),
    (
        "no headers",
        |f| f.remove(&format!("lib/modules/{REL}/build")),
        "kernel-headers",
        "warn",
    ),
    (
        "no kernel= line",
        |f| f.write("boot/firmware/config.txt", "[pi5]\ndtparam=pciex1\n"),
        "boot-kernel-image",
        "warn",
    ),
    (
        "kernel= only for a Pi 4",
        |f| {
            f.write(
                "boot/firmware/config.txt",
                "[pi4]\nkernel=kernel8.img\n[pi5]\ndtparam=pciex1\n",
            )
        },
        "boot-kernel-image",
        "warn",
    ),
    (
        "port not enabled",
        |f| f.write("boot/firmware/config.txt", "kernel=kernel8.img\n"),
        "pcie-port",
        "warn",
    ),
    (
        "port switched off",
        |f| {
            f.write(
                "boot/firmware/config.txt",
                "kernel=kernel8.img\ndtparam=pciex1=off\n",
            )
        },
        "pcie-port",
        "fail",
    ),
    (
        "userspace of another version",
        |f| {
            let lib = "usr/lib/aarch64-linux-gnu";
            f.remove(&format!("{lib}/libnvidia-ml.so.{VER}"));
            f.write(&format!("{lib}/libnvidia-ml.so.580.82.07"), "elf");
        },
        "driver-version-mismatch",
        "fail",
    ),
    (
        "loaded driver of another version",
        |f| f.write("sys/module/nvidia/version", "570.86.16\n"),
        "driver-version-mismatch",
        "fail",
    ),
    (
        "no GSP firmware",
        |f| f.remove(&format!("lib/firmware/nvidia/{VER}")),
        "gsp-firmware-missing",
        "fail",
    ),
    (
        "nouveau bound",
        |f| f.pci(GPU, &[], Some("nouveau")),
        "nouveau-bound",
        "fail",
    ),
    (
        "nouveau not blacklisted",
        |f| f.remove("etc/modprobe.d/blacklist-nouveau.conf"),
        "nouveau-bound",
        "warn",
    ),
    (
        "modules not indexed",
        |f| {
            for e in fs::read_dir(f.p(&format!("lib/modules/{REL}"))).unwrap() {
                let p = e.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("modules.")
                {
                    fs::remove_file(p).unwrap();
                }
            }
        },
        "driver-modules",
        "fail",
    ),
    (
        // The kernel was upgraded and the Pi rebooted: no module for it, none loaded. (One
        // loaded from elsewhere is the H200 case below: info, not a failure.)
        "no module for this kernel",
        |f| {
            fs::rename(
                f.p(&format!("lib/modules/{REL}")),
                f.p("lib/modules/6.12.25+rpt-rpi-v8"),
            )
            .unwrap();
            f.write("proc/modules", "snd 1 0 - Live 0x0\n");
            f.remove("sys/module/nvidia");
        },
        "driver-modules",
        "fail",
    ),
    (
        "proprietary module",
        |f| {
            f.module("updates/dkms/nvidia.ko", "nvidia", "NVIDIA");
            f.depmod();
        },
        "driver-proprietary",
        "fail",
    ),
    (
        "module not loaded",
        |f| f.write("proc/modules", "snd 1 0 - Live 0x0\n"),
        "driver-loaded",
        "warn",
    ),
    (
        "loaded but not bound",
        |f| f.remove(&format!("{GPU}/driver")),
        "gpu-driver-bound",
        "fail",
    ),
    (
        "device node missing",
        |f| f.remove("dev/nvidia0"),
        "device-nodes",
        "warn",
    ),
    (
        "device node closed",
        |f| fs::set_permissions(f.p("dev/nvidiactl"), fs::Permissions::from_mode(0o660)).unwrap(),
        "device-nodes-permissions",
        "warn",
    ),
    (
        "ICD library missing",
        |f| f.remove("usr/lib/aarch64-linux-gnu/libGLX_nvidia.so.0"),
        "vulkan-icd-broken",
        "fail",
    ),
    (
        "libXext missing",
        |f| f.remove("usr/lib/aarch64-linux-gnu/libXext.so.6"),
        "vulkan-icd-broken",
        "fail",
    ),
    (
        "ICD json garbage",
        |f| f.write("usr/share/vulkan/icd.d/nvidia_icd.json", "{not json"),
        "vulkan-icd-broken",
        "fail",
    ),
    (
        "no NVIDIA ICD",
        |f| f.remove("usr/share/vulkan/icd.d/nvidia_icd.json"),
        "vulkan-no-gpu",
        "fail",
    ),
    (
        "no Vulkan loader",
        |f| f.remove("usr/lib/aarch64-linux-gnu/libvulkan.so.1"),
        "vulkan-loader",
        "fail",
    ),
    (
        "under-voltage now",
        |f| {
            f.write(
                "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
                "50005\n",
            )
        },
        "power-throttling",
        "warn",
    ),
    (
        "throttled earlier",
        |f| {
            f.write(
                "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
                "50000\n",
            )
        },
        "power-throttling",
        "info",
    ),
    (
        "hot SoC",
        |f| f.write("sys/class/thermal/thermal_zone0/temp", "86500\n"),
        "power-temperature",
        "warn",
    ),
    (
        "Gen 1 link",
        |f| f.write(&format!("{GPU}/current_link_speed"), "2.5 GT/s PCIe\n"),
        "pcie-link-degraded",
        "warn",
    ),
    (
        "Gen 2 link with Gen 3 forced",
        |f| {
            f.write(
                "boot/firmware/config.txt",
                "[all]\ndtparam=pciex1\ndtparam=pciex1_gen=3\nkernel=kernel8.img\n",
            );
            f.write(&format!("{PORT}/max_link_speed"), "8.0 GT/s PCIe\n");
        },
        "pcie-link-degraded",
        "warn",
    ),
    (
        "BAR unassigned",
        |f| {
            f.write(&format!("{GPU}/resource"), "0x0000001b00000000 0x0000001b00ffffff 0x0000000000040200\n0x0000000000000000 0x0000000fffffffff 0x000000002014220c\n")
        },
        "pcie-bar-space",
        "fail",
    ),
    (
        "GPU fell off the bus",
        |f| f.write(&format!("{GPU}/config"), [0xff; 64]),
        "pcie-device-dead",
        "fail",
    ),
    (
        "AER fatal errors",
        |f| {
            f.write(
                &format!("{GPU}/aer_dev_fatal"),
                "DLP 1\nTOTAL_ERR_FATAL 1\n",
            )
        },
        "pcie-aer-errors",
        "warn",
    ),
    (
        "no GPU on the bus",
        |f| {
            f.remove("sys/bus/pci/devices/0000:01:00.0");
            f.remove(GPU);
        },
        "pcie-link-down",
        "fail",
    ),
    (
        "unpatched modules in the kernel log",
        |f| {
            let log = fs::read_to_string(
                real_logs()
                    .join("07-a400-pi5-565.77-open-fwsec-wpr2-RmInitAdapter-failed.dmesg.txt"),
            )
            .unwrap();
            f.write("var/log/kern.log", log);
        },
        "driver-unpatched",
        "fail",
    ),
    (
        "a Pi 4",
        |f| {
            f.board(
                "Raspberry Pi Compute Module 4 Rev 1.1",
                "raspberrypi,4-compute-module\0brcm,bcm2711",
            )
        },
        "platform-unsupported",
        "warn",
    ),
];

#[test]
fn each_broken_thing_is_found_with_its_fix() {
    for (what, change, id, status) in BREAKAGES {
        let Some(f) = Fake::healthy() else {
            return;
        };
        change(&f);
        let (code, got, stdout) = f.run();
        assert!(
            has(&got, id, status),
            "{what}: expected {id}={status}:\n{stdout}"
        );
        assert_eq!(code, exit_code(&got), "{what}: exit code");
    }
}

/// A GPU that the installed nvidia module does not hold gets the fix that loads it (unbinding
/// the other driver first). (Without a module the fix is the modules' own, and the report then
/// points it at `driver-modules`.)
#[test]
fn a_gpu_nvidia_does_not_hold_gets_the_fix_that_loads_it() {
    let cases = [
        (
            Some("vfio-pci"),
            "unbind it and load nvidia: sudo modprobe nvidia",
        ),
        (None, "sudo modprobe nvidia"),
    ];
    for (driver, want) in cases {
        let Some(f) = Fake::healthy() else {
            return;
        };
        f.write("proc/modules", "snd 1 0 - Live 0x0\n");
        match driver {
            Some(d) => f.pci(GPU, &[], Some(d)),
            None => f.remove(&format!("{GPU}/driver")),
        }
        let (_, got, stdout) = f.run();
        assert!(
            has(&got, "gpu-driver-bound", "warn"),
            "{driver:?}:\n{stdout}"
        );
        let json: Value = serde_json::from_str(&stdout).expect("doctor --json prints JSON");
        let fix = json["checks"]
            .as_array()
            .expect("checks is an array")
            .iter()
            .find(|c| c["id"] == "gpu-driver-bound")
            .and_then(|c| c["fix"].as_str());
        assert_eq!(fix, Some(want), "{driver:?}:\n{stdout}");
    }
}

#[test]
fn a_cm5_needs_no_pciex1_and_16k_without_nvidia_is_only_info() {
    let Some(f) = Fake::healthy() else {
        return;
    };
    f.board(
        "Raspberry Pi Compute Module 5 Rev 1.0",
        "raspberrypi,5-compute-module\0brcm,bcm2712",
    );
    f.write("boot/firmware/config.txt", "kernel=kernel8.img\n");
    let (_, got, stdout) = f.run();
    assert!(has(&got, "pcie-port", "ok"), "{stdout}");

    // An AMD card on a 16K kernel: fine, so only info.
    let f = Fake::new();
    f.write("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
    f.write("proc/sys/kernel/osrelease", "6.12.47+rpt-rpi-2712\n");
    f.pci(
        GPU,
        &[
            ("vendor", "0x1002"),
            ("device", "0x687f"),
            ("class", "0x030000"),
        ],
        Some("amdgpu"),
    );
    let (_, got, stdout) = f.run();
    assert!(has(&got, "kernel-page-size", "info"), "{stdout}");
    assert!(has(&got, "pcie-gpu", "info"), "{stdout}");
}

#[test]
fn empty_garbage_and_unreadable_roots_still_report() {
    // Empty.
    let empty = tempfile::tempdir().unwrap();
    let (code, json, stdout, _) =
        doctor(&["--json", "--root", empty.path().to_str().unwrap()], None);
    let got = findings(&json);
    assert!(got.len() >= 8, "every check reports something:\n{stdout}");
    assert!(code == 0 || code == 1);
    assert!(!got.iter().any(|(id, s)| s == "fail" && id == "platform"));

    // Garbage in every file a check reads.
    let g = Fake::new();
    let junk: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(40503) >> 3) as u8)
        .collect();
    for p in [
        "proc/device-tree/model",
        "proc/device-tree/compatible",
        "proc/sys/kernel/osrelease",
        "proc/modules",
        "proc/cmdline",
        "proc/driver/nvidia/version",
        "sys/module/nvidia/version",
        "boot/firmware/config.txt",
        "var/log/kern.log",
        "etc/group",
        "usr/share/vulkan/icd.d/nvidia_icd.json",
        "etc/vulkan/icd.d/x.json",
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "sys/class/thermal/thermal_zone0/temp",
        "sys/class/hwmon/hwmon0/name",
        "dev/nvidiactl",
    ] {
        g.write(p, &junk);
    }
    g.write("proc/sys/kernel/osrelease", "6.12.47+rpt-rpi-v8\n");
    g.write(&format!("lib/modules/{REL}/modules.dep.bin"), &junk);
    g.write(&format!("lib/modules/{REL}/modules.dep"), &junk);
    g.write(&format!("lib/modules/{REL}/updates/nvidia.ko"), &junk);
    g.write(&format!("boot/config-{REL}"), &junk);
    g.pci(
        GPU,
        &[
            ("vendor", "zz"),
            ("class", "\u{1}"),
            ("resource", "garbage\n0x1"),
            ("current_link_speed", "fast"),
            ("aer_dev_fatal", "TOTAL_ERR_FATAL x"),
        ],
        None,
    );
    g.write(&format!("{GPU}/config"), &junk[..2]);
    let (code, json, stdout, _) =
        doctor(&["--json", "--root", g.dir.path().to_str().unwrap()], None);
    let got = findings(&json);
    assert!(code == 0 || code == 1, "{stdout}");
    assert!(got.len() >= 8, "{stdout}");
    let crashed: Vec<_> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["summary"].as_str().unwrap_or("").contains("crashed"))
        .collect();
    assert!(
        crashed.is_empty(),
        "a check crashed on garbage: {crashed:?}"
    );

    // Unreadable: directories where files belong, symlink loops, a file where a directory belongs.
    let u = Fake::new();
    for d in [
        "proc/sys/kernel/osrelease",
        "proc/modules",
        "var/log/kern.log",
        "boot/firmware/config.txt",
    ] {
        fs::create_dir_all(u.p(d)).unwrap();
    }
    u.link("proc/device-tree", "device-tree");
    u.write("sys/bus/pci/devices", "not a directory");
    u.write("usr/share/vulkan/icd.d", "not a directory");
    fs::create_dir_all(u.p("lib/firmware/nvidia")).unwrap();
    fs::set_permissions(
        u.p("lib/firmware/nvidia"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let (code, json, stdout, _) =
        doctor(&["--json", "--root", u.dir.path().to_str().unwrap()], None);
    fs::set_permissions(
        u.p("lib/firmware/nvidia"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert!(code == 0 || code == 1, "{stdout}");
    assert!(findings(&json).len() >= 8, "{stdout}");

    // A root that does not exist: doctor cannot run.
    let (code, _, _, stderr) = doctor(&["--root", "/nonexistent/pigpu-root"], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/pigpu-root"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// udev under umockdev

fn umockdev_run() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("umockdev-run"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        if std::env::var_os("PIGPU_REQUIRE_MODELS").is_some() {
            panic!("umockdev-run (package umockdev) is required for the doctor udev tests");
        }
        eprintln!(
            "SKIPPING doctor udev tests: umockdev-run not installed (apt-get install umockdev)"
        );
    }
    found
}

/// Runs `pigpu doctor --json --check pcie` with the devices of one umockdev file.
fn under_umockdev(runner: &Path, file: &str) -> (i32, Vec<(String, String)>, Value, String) {
    let desc = project_root()
        .join("tests/fixtures/doctor/umockdev")
        .join(file);
    let out = Command::new(runner)
        .arg("-d")
        .arg(&desc)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_pigpu"))
        .args(["doctor", "--json", "--check", "pcie"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn umockdev-run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{file}: no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        findings(&json),
        json,
        stdout,
    )
}

fn summary_of<'a>(json: &'a Value, id: &str) -> &'a str {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .and_then(|c| c["summary"].as_str())
        .unwrap_or("")
}

#[test]
fn udev_enumerates_umockdev_pi5_gpus() {
    let Some(runner) = umockdev_run() else {
        return;
    };
    let (code, f, json, out) = under_umockdev(&runner, "pi5-nvidia-gen2.umockdev");
    assert_eq!(code, 0, "{out}");
    assert!(problems(&f).is_empty(), "{out}");
    assert!(
        has(&f, "pcie-gpu", "ok") && has(&f, "pcie-link", "ok") && has(&f, "pcie-bars", "ok"),
        "{out}"
    );
    assert!(
        summary_of(&json, "pcie-gpu").contains("(10de:24b0) on 1000110000.pcie, driver nvidia"),
        "{out}"
    );
    assert!(summary_of(&json, "pcie-link").contains("Gen 2"), "{out}");

    let (code, f, json, out) = under_umockdev(&runner, "pi5-nvidia-gen3.umockdev");
    assert_eq!(code, 0, "{out}");
    assert!(problems(&f).is_empty(), "{out}");
    assert!(
        summary_of(&json, "pcie-link").contains("Gen 3 (8 GT/s) x1"),
        "{out}"
    );

    let (code, f, json, out) = under_umockdev(&runner, "pi5-nvidia-degraded.umockdev");
    assert_eq!(code, 0, "a degraded link is a warning:\n{out}");
    assert!(has(&f, "pcie-link-degraded", "warn"), "{out}");
    assert!(
        summary_of(&json, "pcie-link-degraded").contains("Gen 1 (2.5 GT/s)"),
        "{out}"
    );
    assert!(has(&f, "pcie-aer-errors", "info"), "{out}");

    let (code, f, _, out) = under_umockdev(&runner, "pi5-no-device.umockdev");
    assert_eq!(code, 1, "{out}");
    assert!(has(&f, "pcie-link-down", "fail"), "{out}");
    assert!(
        out.contains("nothing enumerated behind the external port"),
        "{out}"
    );

    let (code, f, json, out) = under_umockdev(&runner, "pi5-nvidia-bar-unassigned.umockdev");
    assert_eq!(code, 1, "{out}");
    assert!(has(&f, "pcie-bar-space", "fail"), "{out}");
    assert!(out.contains("BAR1 (16 GiB, 64-bit, prefetchable)"), "{out}");
    assert!(
        summary_of(&json, "pcie-gpu").contains("driver none"),
        "{out}"
    );
}

/// docs/doctor.md has a section (a `### ` heading naming it) for every check id and every
/// finding id the code can emit.
#[test]
fn docs_cover_every_check_and_finding_id() {
    let docs = fs::read_to_string(project_root().join("docs/doctor.md")).unwrap();
    let headings: Vec<&str> = docs.lines().filter(|l| l.starts_with("### ")).collect();
    let documented = |id: &str| headings.iter().any(|h| h.contains(&format!("`{id}`")));
    let re = regex::Regex::new(
        r#"(?:Finding::(?:ok|info|warn|fail|skip|new)\(\s*|finding: |\bid: )"([a-z0-9]+(?:-[a-z0-9]+)*)""#,
    )
    .unwrap();
    let mut ids = BTreeSet::new();
    let mut stack = vec![project_root().join("src/doctor")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                // Ids used only by unit tests do not count.
                let code = text.split("#[cfg(test)]").next().unwrap();
                for c in re.captures_iter(code) {
                    ids.insert(c[1].to_string());
                }
            }
        }
    }
    assert!(ids.len() > 40, "found only {ids:?}");
    let missing: Vec<_> = ids.iter().filter(|id| !documented(id)).collect();
    assert!(
        missing.is_empty(),
        "docs/doctor.md lacks sections for {missing:?}"
    );
}

/// On the live machine the vulkan check asks the Vulkan engine (real loader; lavapipe in CI)
/// which devices exist.
#[test]
fn live_vulkan_check_lists_the_real_devices() {
    let (code, json, stdout, _) = doctor(&["--json", "--check", "vulkan"], None);
    assert!(code == 0 || code == 1, "{stdout}");
    let f = findings(&json);
    assert!(
        has(&f, "vulkan-devices", "ok")
            || has(&f, "vulkan-devices", "warn")
            || has(&f, "vulkan-no-gpu", "fail"),
        "the device listing ran:\n{stdout}"
    );
    let lavapipe = fs::read_dir("/usr/share/vulkan/icd.d")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
        })
        .unwrap_or(false);
    if lavapipe {
        assert!(
            stdout.contains("llvmpipe"),
            "lavapipe is installed, so llvmpipe is listed:\n{stdout}"
        );
    }
}

/// A GPU whose upstream port is not in sysfs: its own x16 Gen 4 maximum says nothing about the
/// Pi's x1 port, so no degraded-link alarm.
#[test]
fn no_degraded_link_without_the_upstream_ports_numbers() {
    let f = Fake::new();
    f.pci(
        GPU,
        &[
            ("vendor", "0x10de"),
            ("device", "0x2204"),
            ("class", "0x030000"),
            ("current_link_speed", "5.0 GT/s PCIe"),
            ("current_link_width", "1"),
            ("max_link_speed", "16.0 GT/s PCIe"),
            ("max_link_width", "16"),
        ],
        Some("nvidia"),
    );
    let (_, got, stdout) = f.run();
    assert!(has(&got, "pcie-link", "ok"), "{stdout}");
    assert!(
        !got.iter().any(|(id, _)| id == "pcie-link-degraded"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// The pcie check's whole findings

/// `doctor --json --check pcie` on `f`: each finding as `status id: summary`, its evidence lines
/// (`  - `) and fix (`  fix: `), with the fake root's directory written as `ROOT`.
fn pcie_findings(f: &Fake) -> Vec<String> {
    let dir = f.dir.path().to_str().unwrap();
    let (_, json, stdout, _) = doctor(&["--json", "--check", "pcie", "--root", dir], None);
    findings(&json);
    let mut out = Vec::new();
    for c in json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}"))
    {
        let text = |v: &Value| v.as_str().unwrap_or("").replace(dir, "ROOT");
        out.push(format!(
            "{} {}: {}",
            text(&c["status"]),
            text(&c["id"]),
            text(&c["summary"])
        ));
        for e in c["evidence"].as_array().unwrap() {
            out.push(format!("  - {}", text(e)));
        }
        if !c["fix"].is_null() {
            out.push(format!("  fix: {}", text(&c["fix"])));
        }
    }
    out
}

/// Every way the pcie check ends, pinned whole (summaries, evidence, fixes, order): no PCI
/// information, no NVIDIA GPU but another display device, no GPU on a PC and on a Pi 5 with
/// something else behind its port, a GPU with fatal or corrected AER errors, one that reads
/// back all ones.
#[test]
fn pcie_check_findings_whole() {
    const REL: &str = "6.12.47+rpt-rpi-2712";
    const GPU_SYS: &str =
        "/sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0";
    const GPU_NAME: &str = "0000:01:00.0 (10de:24b0) on 1000110000.pcie";
    let pi_with_gpu = |file: Option<(&str, &[u8])>| {
        let f = Fake::new();
        f.pi5(REL, "4K");
        f.pi5_gpu(&[], Some("nvidia"));
        if let Some((name, content)) = file {
            f.write(&format!("{GPU}/{name}"), content);
        }
        pcie_findings(&f)
    };
    let gpu_ok_and_link = || {
        vec![
            format!("ok pcie-gpu: NVIDIA GPU {GPU_NAME}, driver nvidia"),
            "ok pcie-link: 0000:01:00.0: link at Gen 2 (5 GT/s) x1, the most this port allows"
                .to_string(),
            format!("  - {GPU_SYS}: current_link_speed 5 GT/s x1, max_link_speed 16 GT/s x16"),
            "  - upstream 0000:00:00.0: max_link_speed 5 GT/s x1".to_string(),
        ]
    };

    // No /sys/bus/pci under the root.
    let f = Fake::new();
    f.pi5(REL, "4K");
    assert_eq!(
        pcie_findings(&f),
        ["skip pcie: no PCI information under this root (no /sys/bus/pci)"]
    );

    // Another display device only (on a PC: no platform controller).
    let f = Fake::new();
    f.pci(
        "sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0",
        &[
            ("vendor", "0x1002"),
            ("device", "0x73ff"),
            ("class", "0x030000"),
        ],
        Some("amdgpu"),
    );
    assert_eq!(
        pcie_findings(&f),
        ["info pcie-gpu: no NVIDIA GPU, but another display device: 0000:03:00.0 (1002:73ff); the NVIDIA checks do not apply to it"]
    );

    // No GPU on a PC: a network card.
    let f = Fake::new();
    f.pci(
        "sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0",
        &[
            ("vendor", "0x8086"),
            ("device", "0x15b8"),
            ("class", "0x020000"),
        ],
        Some("e1000e"),
    );
    assert_eq!(
        pcie_findings(&f),
        [
            "fail pcie-link-down: no NVIDIA GPU (vendor 0x10de) is on the PCI bus",
            "  - 1 PCI functions enumerated, none with vendor 0x10de",
            "  fix: reseat the card, check its power cables and any riser, and check that the slot is enabled in the firmware (BIOS) setup",
        ]
    );

    // No GPU on a Pi 5, an NVMe drive behind the external port.
    let f = Fake::new();
    f.pi5(REL, "4K");
    f.pci(
        PORT,
        &[
            ("vendor", "0x14e4"),
            ("device", "0x2712"),
            ("class", "0x060400"),
        ],
        Some("pcieport"),
    );
    f.pci(
        &format!("{PORT}/0000:01:00.0"),
        &[
            ("vendor", "0x144d"),
            ("device", "0xa80a"),
            ("class", "0x010802"),
        ],
        Some("nvme"),
    );
    assert_eq!(
        pcie_findings(&f),
        [
            "fail pcie-link-down: no NVIDIA GPU (vendor 0x10de) is on the PCI bus",
            "  - 2 PCI functions enumerated, none with vendor 0x10de",
            "  - behind the external port: 0000:01:00.0 (144d:a80a) on 1000110000.pcie",
            "  fix: enable the port ('dtparam=pciex1' in /boot/firmware/config.txt on a Pi 5), try 'dtparam=pciex1_gen=2', check the ribbon cable / riser and its power, and power the GPU on before the Pi",
        ]
    );

    // Fatal AER errors: a warning with the fix; corrected ones: information.
    let mut want = gpu_ok_and_link();
    want.extend([
        format!("warn pcie-aer-errors: {GPU_NAME} reported 1 fatal and 0 non-fatal PCIe errors"),
        format!("  - {GPU_SYS}/aer_dev_fatal, aer_dev_nonfatal"),
        "  fix: reseat or replace the cable/riser and check its power; if Gen 3 is forced try 'dtparam=pciex1_gen=2'; if it started after a kernel update, pin a known-good 6.12.y kernel".to_string(),
    ]);
    let fatal: &[u8] = b"DLP 1\nTOTAL_ERR_FATAL 1\n";
    assert_eq!(pi_with_gpu(Some(("aer_dev_fatal", fatal))), want);
    let mut want = gpu_ok_and_link();
    want.extend([
        format!("info pcie-aer-errors: {GPU_NAME} reported 3 corrected PCIe errors (the link retried; many of them point at the cable)"),
        format!("  - {GPU_SYS}/aer_dev_correctable: TOTAL_ERR_COR 3"),
    ]);
    let corrected: &[u8] = b"RxErr 3\nTOTAL_ERR_COR 3\n";
    assert_eq!(pi_with_gpu(Some(("aer_dev_correctable", corrected))), want);
    assert_eq!(pi_with_gpu(None), gpu_ok_and_link());

    // Config space reads back all ones: only the dead-device failure for it.
    assert_eq!(
        pi_with_gpu(Some(("config", &[0xff; 64]))),
        [
            format!("fail pcie-device-dead: {GPU_NAME} reads back all ones: it dropped off the bus"),
            format!("  - {GPU_SYS}/config: ff ff ff ff"),
            "  fix: power everything off, check the GPU's PCIe power cables and the riser/cable, switch the GPU's power supply on before the Pi".to_string(),
        ]
    );
}
