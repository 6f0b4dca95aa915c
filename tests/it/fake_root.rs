//! Fake system roots for doctor (and setup) tests, and running `pigpu doctor` on them: a [`Fake`]
//! root in a temporary directory with helpers for files, links and PCI devices in sysfs' shape,
//! the pieces every fake Raspberry Pi 5 shares, and the JSON report read back with its shape
//! checked. Shared by doctor.rs, doctor_platform.rs and setup/rerun.rs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::util::pigpu;

/// Runs pigpu with `args` (and optional stdin), returns (exit code, parsed JSON or Null, stdout, stderr).
pub(crate) fn doctor(args: &[&str], stdin: Option<&[u8]>) -> (i32, Value, String, String) {
    let mut cmd = pigpu();
    cmd.arg("doctor").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pigpu");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "pigpu doctor panicked:\n{stderr}"
    );
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stdout, stderr)
}

/// (id, status) pairs of a JSON report, checking its shape on the way.
pub(crate) fn findings(v: &Value) -> Vec<(String, String)> {
    let obj = v.as_object().expect("report is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["checks", "fixes", "next"],
        "the documented top level"
    );
    // `next` is the first of `fixes`, or null when nothing needs fixing.
    match obj["fixes"].as_array().expect("fixes is an array").first() {
        Some(first) => assert_eq!(obj["next"]["command"], first["command"]),
        None => assert!(obj["next"].is_null()),
    }
    obj["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .map(|c| {
            for k in ["id", "status", "summary", "evidence", "fix"] {
                assert!(c.get(k).is_some(), "finding without {k}: {c}");
            }
            assert!(c["evidence"].is_array());
            let status = c["status"].as_str().unwrap().to_string();
            assert!(
                ["ok", "info", "warn", "fail", "skip"].contains(&status.as_str()),
                "{status}"
            );
            if status == "fail" || status == "warn" {
                assert!(
                    c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                    "a problem without a fix: {c}"
                );
            }
            (c["id"].as_str().unwrap().to_string(), status)
        })
        .collect()
}

pub(crate) fn has(f: &[(String, String)], id: &str, status: &str) -> bool {
    f.iter().any(|(i, s)| i == id && s == status)
}

pub(crate) fn problems(f: &[(String, String)]) -> Vec<(String, String)> {
    f.iter()
        .filter(|(_, s)| s == "warn" || s == "fail")
        .cloned()
        .collect()
}

/// The exit code doctor gives for `f`: 1 when a check failed, else 0.
pub(crate) fn exit_code(f: &[(String, String)]) -> i32 {
    i32::from(f.iter().any(|(_, s)| s == "fail"))
}

/// Runs `doctor --json --log` on the real log at `path` and checks that its first line names
/// its source, that it gives each (id, status) of `want` and no warning or failure beyond them,
/// and the exit code; returns the findings.
pub(crate) fn check_real_log(path: &Path, want: &[(&str, &str)]) -> Vec<(String, String)> {
    let name = path.file_name().unwrap().to_string_lossy();
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("# source: https://"),
        "{name}: line 1 must name its source"
    );
    let (code, json, stdout, _) = doctor(&["--json", "--log", path.to_str().unwrap()], None);
    let f = findings(&json);
    for (id, status) in want {
        assert!(
            has(&f, id, status),
            "{name}: expected {id}={status}, got {f:?}\n{stdout}"
        );
    }
    for (id, status) in problems(&f) {
        assert!(
            want.iter().any(|(i, s)| *i == id && *s == status),
            "{name}: unexpected {id}={status} (not the recorded cause)\n{stdout}"
        );
    }
    assert_eq!(code, exit_code(&f), "{name}: exit code");
    f
}

pub(crate) const GPU: &str =
    "sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0";
pub(crate) const PORT: &str = "sys/devices/platform/axi/1000110000.pcie/pci0000:00/0000:00:00.0";

pub(crate) struct Fake {
    pub(crate) dir: tempfile::TempDir,
}

impl Fake {
    /// An empty root.
    pub(crate) fn new() -> Fake {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }
    pub(crate) fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    pub(crate) fn link(&self, rel: &str, target: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }
    pub(crate) fn remove(&self, rel: &str) {
        let p = self.p(rel);
        if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
    pub(crate) fn pci(&self, path: &str, attrs: &[(&str, &str)], driver: Option<&str>) {
        for (k, v) in attrs {
            self.write(&format!("{path}/{k}"), format!("{v}\n"));
        }
        let addr = path.rsplit('/').next().unwrap();
        let depth = path.matches('/').count();
        self.link(
            &format!("sys/bus/pci/devices/{addr}"),
            &format!("../../../{}", path.trim_start_matches("sys/")),
        );
        if let Some(d) = driver {
            fs::create_dir_all(self.p(&format!("sys/bus/pci/drivers/{d}"))).unwrap();
            self.link(
                &format!("{path}/driver"),
                &format!("{}bus/pci/drivers/{d}", "../".repeat(depth)),
            );
        }
    }
    pub(crate) fn run(&self) -> (i32, Vec<(String, String)>, String) {
        let (code, json, stdout, _) = doctor(
            &["--json", "--root", self.dir.path().to_str().unwrap()],
            None,
        );
        (code, findings(&json), stdout)
    }

    /// The device tree's board: `model` and `compatible` (NUL-separated), each NUL-terminated
    /// as the firmware writes them.
    pub(crate) fn board(&self, model: &str, compatible: &str) {
        self.write("proc/device-tree/model", format!("{model}\0"));
        self.write("proc/device-tree/compatible", format!("{compatible}\0"));
    }

    /// The files that make a root a Raspberry Pi 5 on kernel `rel` with `page` (4K or 16K)
    /// pages: device-tree model and compatible, the running release and its build config.
    pub(crate) fn pi5(&self, rel: &str, page: &str) {
        self.board(
            "Raspberry Pi 5 Model B Rev 1.0",
            "raspberrypi,5-model-b\0brcm,bcm2712",
        );
        self.write("proc/sys/kernel/osrelease", format!("{rel}\n"));
        self.write(
            &format!("boot/config-{rel}"),
            format!("CONFIG_ARM64=y\nCONFIG_ARM64_{page}_PAGES=y\n"),
        );
    }

    /// The Pi 5's PCIe root port (Gen 2 x1) and an RTX A4000 behind it at [`GPU`], with
    /// `extra` attributes and bound to `driver`.
    pub(crate) fn pi5_gpu(&self, extra: &[(&str, &str)], driver: Option<&str>) {
        self.pci(
            PORT,
            &[
                ("vendor", "0x14e4"),
                ("device", "0x2712"),
                ("class", "0x060400"),
                ("current_link_speed", "5.0 GT/s PCIe"),
                ("current_link_width", "1"),
                ("max_link_speed", "5.0 GT/s PCIe"),
                ("max_link_width", "1"),
            ],
            Some("pcieport"),
        );
        let mut attrs = vec![
            ("vendor", "0x10de"),
            ("device", "0x24b0"),
            ("class", "0x030000"),
            ("current_link_speed", "5.0 GT/s PCIe"),
            ("current_link_width", "1"),
            ("max_link_speed", "16.0 GT/s PCIe"),
            ("max_link_width", "16"),
        ];
        attrs.extend_from_slice(extra);
        self.pci(GPU, &attrs, driver);
    }

    /// NVIDIA's device nodes, world-readable and writable as the driver makes them.
    pub(crate) fn nvidia_dev_nodes(&self, names: &[&str]) {
        for n in names {
            self.write(&format!("dev/{n}"), "");
            fs::set_permissions(
                self.p(&format!("dev/{n}")),
                fs::Permissions::from_mode(0o666),
            )
            .unwrap();
        }
    }

    /// NVIDIA's Vulkan ICD manifest, naming `libGLX_nvidia.so.0`.
    pub(crate) fn nvidia_icd(&self) {
        self.write(
            "usr/share/vulkan/icd.d/nvidia_icd.json",
            r#"{"file_format_version": "1.0.1", "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.4.312"}}"#,
        );
    }
}
