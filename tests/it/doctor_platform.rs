//! doctor over the platform model on the machines of issue 13: an x86 server whose NVIDIA
//! driver works from outside `/lib/modules` and whose Vulkan driver lacks glvnd (the H200 row of
//! the table), a fresh Pi 5 (fixes consistent, ending `Next: sudo pigpu setup`), a plain PC (no
//! Pi fixes), a `[gpio4=1]` section read alike by doctor and setup, and the real dynamic loader
//! on a driver library built here with a missing dependency (doctor, `run --list-devices` and
//! the platform model must name the same soname).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fake_root::{doctor, findings, has, problems, Fake};
use crate::util::pigpu;

/// Builds `dir/<file>`, a shared library with soname `soname` that needs each of `needs`
/// (linked against stand-ins made here, then deleted, so the dependency is really missing).
fn library_needing(dir: &Path, file: &str, soname: &str, needs: &[&str]) -> PathBuf {
    let stubs = tempfile::tempdir().unwrap();
    let src = stubs.path().join("x.c");
    fs::write(&src, "int pigpu_test_icd(void) { return 42; }\n").unwrap();
    let mut cmd = Command::new("cc");
    cmd.args(["-shared", "-fPIC", "-o"])
        .arg(dir.join(file))
        .arg(&src)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg("-Wl,--no-as-needed")
        .arg(format!("-L{}", stubs.path().display()));
    for n in needs {
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(stubs.path().join(n))
            .arg(&src)
            .arg(format!("-Wl,-soname,{n}"))
            .status()
            .expect("cc (build-essential) is needed for the loader tests");
        assert!(st.success(), "building the stand-in {n}");
        cmd.arg(format!("-l:{n}"));
    }
    let st = cmd.status().expect("cc");
    assert!(st.success(), "building {file}");
    dir.join(file)
}

fn fixes(json: &Value) -> Vec<(String, String)> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_string(),
                c["fix"].as_str()?.to_string(),
            ))
        })
        .filter(|(_, f)| !f.is_empty())
        .collect()
}

fn problem_fixes(json: &Value) -> Vec<(String, String)> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "warn" || c["status"] == "fail")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["fix"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

const PI_WORDS: &[&str] = &["pigpu setup", "config.txt", "dtparam", "kernel8.img"];

const H200_REL: &str = "6.8.0-87-generic";
const H200_VER: &str = "580.159.04";
const H200_GPU: &str = "sys/devices/pci0000:17/0000:17:01.0/0000:18:00.0";
const H200_PORT: &str = "sys/devices/pci0000:17/0000:17:01.0";

/// The x86-64 H200 server of issue 13, as far as files go.
fn h200() -> Fake {
    let f = Fake::new();
    f.write("proc/sys/kernel/osrelease", format!("{H200_REL}\n"));
    f.write(
        &format!("boot/config-{H200_REL}"),
        "CONFIG_X86_64=y\nCONFIG_X86=y\n",
    );
    // The driver is loaded and has started the GPU; its module is not under /lib/modules and
    // no GSP firmware is under /lib/firmware.
    f.write(
        "proc/modules",
        "nvidia_uvm 2076672 0 - Live 0x0 (POE)\nnvidia 14364672 1 nvidia_uvm, Live 0x0 (POE)\n",
    );
    f.write("sys/module/nvidia/version", format!("{H200_VER}\n"));
    f.write(
        "proc/driver/nvidia/version",
        format!("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {H200_VER}  Release Build  (dvs-builder@U22)\n"),
    );
    f.write(
        "proc/driver/nvidia/gpus/0000:18:00.0/information",
        "Model: \t\t NVIDIA H200\nBus Location: \t 0000:18:00.0\n",
    );
    fs::create_dir_all(f.p(&format!("lib/modules/{H200_REL}/kernel"))).unwrap();
    f.nvidia_dev_nodes(&["nvidiactl", "nvidia0", "nvidia-uvm"]);
    let lib = "usr/lib/x86_64-linux-gnu";
    f.write(&format!("{lib}/libvulkan.so.1"), "elf");
    f.write(&format!("{lib}/libnvidia-ml.so.{H200_VER}"), "elf");
    fs::create_dir_all(f.p(lib)).unwrap();
    // The real thing: libGLX_nvidia needs glvnd's libGLdispatch.so.0, which is not installed.
    library_needing(
        &f.p(lib),
        &format!("libGLX_nvidia.so.{H200_VER}"),
        "libGLX_nvidia.so.0",
        &["libGLdispatch.so.0"],
    );
    f.link(
        &format!("{lib}/libGLX_nvidia.so.0"),
        &format!("libGLX_nvidia.so.{H200_VER}"),
    );
    f.nvidia_icd();
    f.pci(
        H200_PORT,
        &[
            ("vendor", "0x8086"),
            ("device", "0x352a"),
            ("class", "0x060400"),
            ("current_link_speed", "32.0 GT/s PCIe"),
            ("current_link_width", "16"),
            ("max_link_speed", "32.0 GT/s PCIe"),
            ("max_link_width", "16"),
        ],
        Some("pcieport"),
    );
    f.pci(
        H200_GPU,
        &[
            ("vendor", "0x10de"),
            ("device", "0x2335"),
            ("class", "0x030200"),
            ("current_link_speed", "32.0 GT/s PCIe"),
            ("current_link_width", "16"),
            ("max_link_speed", "32.0 GT/s PCIe"),
            ("max_link_width", "16"),
            ("enable", "1"),
            (
                "resource",
                "0x00000000ab000000 0x00000000abffffff 0x0000000000040200\n0x0000220000000000 0x00002203ffffffff 0x000000000014220c\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n0x0000220400000000 0x0000220401ffffff 0x000000000014220c",
            ),
        ],
        Some("nvidia"),
    );
    f.write(&format!("{H200_GPU}/config"), [0xde, 0x10, 0x35, 0x23]);
    f.write(
        "var/log/kern.log",
        format!("Dec  1 10:00:00 h200 kernel: NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  {H200_VER}  Release Build\n"),
    );
    f
}

#[test]
fn h200_like_root_fails_only_on_vulkan_and_names_libglvnd0() {
    let f = h200();
    let root = f.dir.path().to_str().unwrap();
    let (code, json, stdout, _) = doctor(&["--json", "--root", root], None);
    let got = findings(&json);
    let fails: Vec<_> = got.iter().filter(|(_, s)| s == "fail").collect();
    assert_eq!(
        fails,
        vec![&("vulkan-icd-broken".to_string(), "fail".to_string())],
        "{stdout}"
    );
    assert_eq!(code, 1);
    let broken = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "vulkan-icd-broken")
        .unwrap();
    assert!(
        broken["summary"].as_str().unwrap().contains("libglvnd0"),
        "{broken}"
    );
    assert!(
        broken["evidence"][0]
            .as_str()
            .unwrap()
            .contains("libGLdispatch.so.0"),
        "{broken}"
    );
    assert_eq!(broken["fix"], "sudo apt install libglvnd0");
    // Truth over file presence: a working driver from elsewhere and firmware it no longer needs.
    assert!(has(&got, "driver-modules", "info"), "{stdout}");
    assert!(has(&got, "gsp-firmware", "info"), "{stdout}");
    assert!(has(&got, "driver-loaded", "ok"), "{stdout}");
    assert!(
        has(&got, "pcie-link", "ok") && has(&got, "pcie-bars", "ok"),
        "{stdout}"
    );
    assert!(
        !got.iter().any(|(id, _)| id == "vulkan-icd"),
        "no driver loads: {stdout}"
    );
    // Not a Pi: no Pi fix anywhere.
    for (id, fix) in fixes(&json) {
        assert!(
            !PI_WORDS.iter().any(|w| fix.contains(w)),
            "{id} offers a Pi fix off a Pi: {fix}"
        );
    }
    assert_eq!(json["next"]["command"], "sudo apt install libglvnd0");
    let (_, _, human, _) = doctor(&["--root", root], None);
    assert!(
        human
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Next: sudo apt install libglvnd0  (addresses 1 of "),
        "{human}"
    );
}

/// A Raspberry Pi 5 as it comes: Pi OS's config.txt, the 16K kernel, an RTX A4000 on the port,
/// nothing NVIDIA installed.
fn fresh_pi() -> Fake {
    let rel = "6.12.47+rpt-rpi-2712";
    let f = Fake::new();
    f.pi5(rel, "16K");
    f.write(
        "boot/firmware/config.txt",
        fs::read(crate::util::root().join("tests/fixtures/setup/config/pios-bookworm.txt"))
            .unwrap(),
    );
    fs::create_dir_all(f.p(&format!("lib/modules/{rel}/kernel"))).unwrap();
    f.write("proc/modules", "snd 1 0 - Live 0x0\n");
    let lib = "usr/lib/aarch64-linux-gnu";
    f.write(&format!("{lib}/libvulkan.so.1"), "elf");
    f.write(&format!("{lib}/libvulkan_broadcom.so"), "elf");
    f.write(
        "usr/share/vulkan/icd.d/broadcom_icd.aarch64.json",
        r#"{"file_format_version": "1.0.0", "ICD": {"library_path": "/usr/lib/aarch64-linux-gnu/libvulkan_broadcom.so", "api_version": "1.2.255"}}"#,
    );
    f.pi5_gpu(&[], None);
    f
}

#[test]
fn fresh_pi_root_gives_consistent_fixes_ending_with_setup() {
    let f = fresh_pi();
    let root = f.dir.path().to_str().unwrap();
    let (code, json, stdout, _) = doctor(&["--json", "--root", root], None);
    let got = findings(&json);
    assert_eq!(code, 1, "{stdout}");
    for (id, st) in [
        ("kernel-page-size", "fail"),
        ("boot-kernel-image", "warn"),
        ("driver-modules", "fail"),
        ("gpu-driver-bound", "warn"),
        ("vulkan-no-gpu", "fail"),
    ] {
        assert!(has(&got, id, st), "expected {id}={st}:\n{stdout}");
    }
    let all = problem_fixes(&json);
    // No 16K-kernel headers next to "switch to the 4K kernel".
    assert!(
        !all.iter()
            .any(|(_, f)| f.contains("linux-headers-rpi-2712")),
        "{all:?}"
    );
    // The kernel= edit is given once: boot-kernel-image follows from kernel-page-size.
    assert_eq!(
        all.iter()
            .filter(|(_, f)| f.contains("kernel8.img"))
            .count(),
        1,
        "{all:?}"
    );
    assert!(!all.iter().any(|(_, f)| f.contains("tee -a")), "{all:?}");
    // No modprobe while no module exists.
    assert!(!all.iter().any(|(_, f)| f.contains("modprobe")), "{all:?}");
    // Every problem's fix is setup, or points at the finding whose fix comes first.
    for (id, fix) in &all {
        assert!(
            fix.contains("sudo pigpu setup")
                || fix.contains("follows from")
                || fix.contains("as for"),
            "{id}: {fix}"
        );
    }
    let next = &json["next"];
    assert_eq!(next["command"], "sudo pigpu setup");
    assert_eq!(
        next["addresses"].as_u64().unwrap() as usize,
        problems(&got).len()
    );
    let (_, _, human, _) = doctor(&["--root", root], None);
    let last = human.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("Next: sudo pigpu setup  (addresses "),
        "{human}"
    );
}

#[test]
fn a_plain_pc_gets_no_pi_fixes_and_no_headers_warning() {
    let f = Fake::new();
    f.write("proc/sys/kernel/osrelease", "6.1.0-40-amd64\n");
    f.write("boot/config-6.1.0-40-amd64", "CONFIG_X86_64=y\n");
    f.write("proc/modules", "i915 1 0 - Live 0x0\n");
    f.write("usr/lib/x86_64-linux-gnu/libvulkan.so.1", "elf");
    f.pci(
        "sys/devices/pci0000:00/0000:00:02.0",
        &[
            ("vendor", "0x8086"),
            ("device", "0x46a6"),
            ("class", "0x030000"),
        ],
        Some("i915"),
    );
    let root = f.dir.path().to_str().unwrap();
    let (_, json, stdout, _) = doctor(&["--json", "--root", root], None);
    let got = findings(&json);
    assert!(has(&got, "platform", "info"), "{stdout}");
    assert!(has(&got, "boot-config", "skip"), "{stdout}");
    assert!(!has(&got, "kernel-headers", "warn"), "{stdout}");
    assert!(problems(&got).is_empty(), "{stdout}");

    // The same PC with an NVIDIA card and no driver: the fixes are the PC's, not the Pi's.
    f.pci(
        "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0",
        &[
            ("vendor", "0x10de"),
            ("device", "0x2684"),
            ("class", "0x030000"),
        ],
        None,
    );
    let (_, json, stdout, _) = doctor(&["--json", "--root", root], None);
    let got = findings(&json);
    assert!(has(&got, "driver-modules", "fail"), "{stdout}");
    for (id, fix) in problem_fixes(&json) {
        assert!(
            !PI_WORDS.iter().any(|w| fix.contains(w)),
            "{id} offers a Pi fix off a Pi: {fix}"
        );
        assert!(!fix.contains("modprobe"), "{id}: {fix}");
    }
}

#[test]
fn doctor_and_setup_read_a_conditional_section_alike() {
    let f = fresh_pi();
    let text = "[pi5]\ndtparam=pciex1\n[gpio4=1]\nkernel=kernel8.img\n[all]\n";
    f.write("boot/firmware/config.txt", text);
    let (_, json, stdout, _) = doctor(
        &[
            "--json",
            "--root",
            f.dir.path().to_str().unwrap(),
            "--check",
            "boot-config",
        ],
        None,
    );
    let got = findings(&json);
    assert!(has(&got, "boot-kernel-image", "warn"), "{stdout}");
    assert!(stdout.contains("cannot evaluate"), "{stdout}");
    let setup = ::pigpu::provision::bootconfig::effective(text, ::pigpu::platform::Board::Pi5);
    assert_eq!(setup.kernel, None, "setup must not count [gpio4=1] either");
    assert_eq!(setup.uncertain.len(), 1);
}

/// The real dynamic loader, on this machine: a Vulkan driver whose library needs a soname that
/// exists nowhere. doctor, `run --list-devices` and the platform model all name it.
#[test]
fn the_real_loader_names_the_missing_dependency_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "libpigpu-test-missing.so.3";
    let lib = library_needing(
        dir.path(),
        "libpigpu_test_icd.so",
        "libpigpu_test_icd.so",
        &[missing],
    );
    let lib_s = lib.to_str().unwrap();
    // In process: dlopen's error and the ELF walk agree.
    match ::pigpu::platform::vulkan::dlopen(lib_s) {
        ::pigpu::platform::vulkan::Load::Missing { soname, .. } => assert_eq!(soname, missing),
        other => panic!("{other:?}"),
    }
    let root = ::pigpu::sys::Root::new(dir.path());
    match ::pigpu::platform::vulkan::walk(&root, "/libpigpu_test_icd.so", false) {
        ::pigpu::platform::vulkan::Load::Missing { soname, .. } => assert_eq!(soname, missing),
        other => panic!("{other:?}"),
    }
    let icd = dir.path().join("pigpu_test_icd.json");
    fs::write(
        &icd,
        format!(r#"{{"file_format_version": "1.0.0", "ICD": {{"library_path": "{lib_s}", "api_version": "1.3.0"}}}}"#),
    )
    .unwrap();
    let with_icd = |cmd: &mut Command| {
        cmd.env("VK_DRIVER_FILES", &icd)
            .env_remove("VK_ICD_FILENAMES")
            .stdin(Stdio::null());
    };
    let mut c = pigpu();
    c.args(["run", "--list-devices"]);
    with_icd(&mut c);
    let out = c.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(missing), "run --list-devices: {said}");

    let mut c = pigpu();
    c.args(["doctor", "--json", "--check", "vulkan"]);
    with_icd(&mut c);
    let out = c.output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = findings(&json);
    assert!(has(&got, "vulkan-icd-broken", "fail"), "{json}");
    let text = json.to_string();
    assert!(text.contains(missing), "{text}");
    assert!(has(&got, "vulkan-no-gpu", "fail"), "{json}");
}
