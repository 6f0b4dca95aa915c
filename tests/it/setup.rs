//! `pigpu setup` end to end on fake roots: real downloads from a local HTTP server, real hashing
//! and tree checks, real `patch`, a real Kbuild build of the fixture modules against Debian's
//! kernel headers, real `depmod`, real file edits; apt/DKMS/module loading go through the
//! recording host (they cannot run against a fake root).

mod interrupted;
mod kbuild;
mod rerun;
mod robust;
mod server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use pigpu::cmd::setup::{run_with, Args};
use pigpu::cmd::Outcome;
use pigpu::provision::manifest::Manifest;
use pigpu::provision::plan::{self, Op, Options, Persist};
use pigpu::provision::probe;
use pigpu::provision::recording::RecordingHost;
use pigpu::sys::prompt::{Prompts, Scripted};
use pigpu::sys::Root;
use server::Server;
use tempfile::TempDir;

use crate::util;

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    args: Args,
}

fn fixtures() -> PathBuf {
    util::root().join("tests/fixtures/setup")
}

/// Debian's kernel headers for this machine: (release, directory).
fn headers() -> (String, PathBuf) {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir("/usr/src")
        .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let rel = name.strip_prefix("linux-headers-")?.to_string();
            (p.join(".config").is_file() && p.join("Makefile").is_file()).then_some((rel, p))
        })
        .collect();
    found.sort();
    found.pop().expect(
        "no kernel headers under /usr/src: install linux-headers-amd64 (scripts/install-deps.sh)",
    )
}

/// The `-common` half of Debian's split headers for `rel` (`/lib/modules/<rel>/source`).
fn common_headers(rel: &str) -> Option<PathBuf> {
    let p = fs::canonicalize(format!("/lib/modules/{rel}/source")).ok()?;
    p.join("Makefile").is_file().then_some(p)
}

#[derive(Default)]
struct RootOpts {
    /// NVIDIA device id on the bus.
    gpu: Option<u16>,
    /// Running kernel (`proc/sys/kernel/osrelease`); none = an image that is not running.
    running: Option<String>,
    /// Only a 16K-page Pi kernel, no 4K one.
    only_16k: bool,
}

/// A root with NVIDIA GPU `gpu` on the bus and nothing else out of the ordinary.
fn gpu_root(dir: &Path, gpu: u16) -> (PathBuf, String) {
    make_root(
        dir,
        &RootOpts {
            gpu: Some(gpu),
            ..Default::default()
        },
    )
}

const PI_OS_CONFIG: &str = "config/pios-bookworm.txt";

fn make_root(dir: &Path, o: &RootOpts) -> (PathBuf, String) {
    let root = dir.join("root");
    let w = |p: &str, text: &str| {
        let f = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, text).unwrap();
    };
    fs::create_dir_all(root.join("boot/firmware")).unwrap();
    fs::copy(
        fixtures().join(PI_OS_CONFIG),
        root.join("boot/firmware/config.txt"),
    )
    .unwrap();
    w("/boot/firmware/kernel8.img", "fixture 4K kernel image");
    w("/boot/firmware/kernel_2712.img", "fixture 16K kernel image");
    w(
        "/proc/device-tree/model",
        "Raspberry Pi 5 Model B Rev 1.0\0",
    );
    w(
        "/etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n",
    );
    w("/etc/group", "root:x:0:\nvideo:x:44:pi\n");
    w(
        "/var/lib/dpkg/status",
        "Package: build-essential\nStatus: install ok installed\nVersion: 12.12\n\nPackage: patch\nStatus: install ok installed\n",
    );
    let rel = if o.only_16k {
        let rel = "6.12.47+rpt-rpi-2712".to_string();
        fs::create_dir_all(root.join("lib/modules").join(&rel).join("kernel")).unwrap();
        rel
    } else {
        let (rel, dir) = headers();
        let m = root.join("lib/modules").join(&rel);
        fs::create_dir_all(&m).unwrap();
        // As Debian does with split headers: build -> /usr/src/linux-headers-<rel> (the arch
        // half), source -> /usr/src/linux-headers-<abi>-common; inside the fake root those paths
        // link to the host's real headers.
        std::os::unix::fs::symlink(&dir, m.join("build")).unwrap();
        fs::create_dir_all(root.join("usr/src")).unwrap();
        std::os::unix::fs::symlink(&dir, root.join("usr/src").join(dir.file_name().unwrap()))
            .unwrap();
        if let Some(common) = common_headers(&rel) {
            std::os::unix::fs::symlink(&common, m.join("source")).unwrap();
            let link = root.join("usr/src").join(common.file_name().unwrap());
            if !link.exists() {
                std::os::unix::fs::symlink(&common, link).unwrap();
            }
        }
        rel
    };
    if let Some(dev) = o.gpu {
        let d = root.join("sys/bus/pci/devices/0001:01:00.0");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "0x10de\n").unwrap();
        fs::write(d.join("device"), format!("0x{dev:04x}\n")).unwrap();
        fs::write(d.join("class"), "0x030000\n").unwrap();
    }
    if let Some(r) = &o.running {
        w("/proc/sys/kernel/osrelease", &format!("{r}\n"));
        w(
            "/proc/sys/kernel/random/boot_id",
            "11111111-1111-1111-1111-111111111111\n",
        );
        w("/proc/modules", "");
    }
    (root, rel)
}

/// Serves the fixture artifacts; returns the server.
fn serve(dir: &Path) -> Server {
    let s = Server::start();
    let stage = dir.join("tarball");
    let top = stage.join("fixture-modules-1.0.0");
    fs::create_dir_all(&stage).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("srctree"))
        .arg(&top)
        .status()
        .unwrap();
    assert!(st.success());
    let tgz = dir.join("src.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&stage)
        .arg("fixture-modules-1.0.0")
        .status()
        .unwrap();
    assert!(st.success());
    s.add(
        "/archive/fixture-modules-1.0.0.tar.gz",
        fs::read(&tgz).unwrap(),
    );
    for p in ["0001-query-coherency.patch", "0003-break-build.patch"] {
        s.add(
            &format!("/patches/{p}"),
            fs::read(fixtures().join("patches").join(p)).unwrap(),
        );
    }
    s.add(
        "/fake-installer.run",
        fs::read(fixtures().join("fake-installer.run")).unwrap(),
    );
    s
}

/// Writes the fixture manifest for `base` (with `edit` applied) beside its local patch.
fn manifest(dir: &Path, base: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let m = dir.join("mirror");
    fs::create_dir_all(&m).unwrap();
    fs::copy(
        fixtures().join("patches/0002-uvm-flush.patch"),
        m.join("0002-uvm-flush.patch"),
    )
    .unwrap();
    let text = fs::read_to_string(fixtures().join("manifest.toml.in"))
        .unwrap()
        .replace("@BASE@", base)
        .replace("@ARCH@", std::env::consts::ARCH);
    let path = m.join("manifest.toml");
    fs::write(&path, edit(text)).unwrap();
    path
}

fn setup(
    root: &Path,
    manifest: &Path,
    extra: &[&str],
    host: &mut RecordingHost,
) -> anyhow::Result<Outcome> {
    let mut argv: Vec<String> = vec!["setup".into(), "--root".into(), root.display().to_string()];
    argv.extend([
        "--manifest".into(),
        manifest.display().to_string(),
        "--yes".into(),
        "-j2".into(),
    ]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    let w = Wrap::try_parse_from(&argv).unwrap();
    run_with(w.args, host, &mut Prompts::Defaults)
}

/// Where setup installs the fixture's `nvidia.ko` for kernel `rel`.
fn nvidia_ko(root: &Path, rel: &str) -> PathBuf {
    root.join("lib/modules")
        .join(rel)
        .join("kernel/drivers/video/nvidia.ko")
}

/// The directories setup made in a root that had none of them are gone after `--undo`.
fn assert_setup_dirs_gone(root: &Path) {
    for d in [
        "etc/udev",
        "etc/modules-load.d",
        "etc/modprobe.d",
        "etc/apt",
    ] {
        assert!(
            !root.join(d).exists(),
            "{d} was made by setup and is left after --undo"
        );
    }
}

fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn options() -> Options {
    Options {
        pcie_gen: 2,
        persist: Persist::Dkms,
        jobs: 2,
        accept_unpinned: false,
        hold_kernel: true,
        apt_pin: true,
    }
}

/// The APT pin pigpu writes, read by real apt against Debian's package lists (the private lists
/// `scripts/fetch-kernel-sources.sh` keeps, which include `contrib`'s nvidia packages).
#[test]
fn apt_pin_keeps_debian_nvidia_packages_out() {
    let lists = kbuild::cache().join("apt");
    if !lists.join("sources.list").is_file() {
        eprintln!(
            "skipped: {} missing (scripts/fetch-kernel-sources.sh)",
            lists.display()
        );
        assert!(
            std::env::var_os("PIGPU_REQUIRE_MODELS").is_none(),
            "run scripts/fetch-kernel-sources.sh"
        );
        return;
    }
    let t = TempDir::new().unwrap();
    let parts = t.path().join("preferences.d");
    fs::create_dir_all(&parts).unwrap();
    fs::write(
        parts.join("pigpu-nvidia.pref"),
        pigpu::provision::files::apt_pin(),
    )
    .unwrap();
    let policy = |prefs: &Path| {
        let out = Command::new("apt-cache")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                lists.join("sources.list").display()
            ))
            .args([
                "-o",
                "Dir::Etc::SourceParts=/nonexistent",
                "-o",
                "Dir::Etc::Preferences=/nonexistent",
            ])
            .arg("-o")
            .arg(format!("Dir::Etc::PreferencesParts={}", prefs.display()))
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                lists.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", t.path().join("cache").display()))
            .args(["policy", "nvidia-open-kernel-source", "linux-headers-amd64"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pinned = policy(&parts);
    let unpinned = policy(&t.path().join("none"));
    let candidate = |text: &str, pkg: &str| {
        text.split(&format!("{pkg}:\n"))
            .nth(1)
            .and_then(|r| {
                r.lines()
                    .find_map(|l| l.trim().strip_prefix("Candidate: ").map(str::to_string))
            })
            .unwrap()
    };
    assert_ne!(
        candidate(&unpinned, "nvidia-open-kernel-source"),
        "(none)",
        "{unpinned}"
    );
    assert_eq!(
        candidate(&pinned, "nvidia-open-kernel-source"),
        "(none)",
        "{pinned}"
    );
    assert!(pinned.contains(" -1\n"), "{pinned}");
    // Nothing else is affected.
    assert_eq!(
        candidate(&pinned, "linux-headers-amd64"),
        candidate(&unpinned, "linux-headers-amd64")
    );
}

fn plan_for(root: &Path, manifest: &Path) -> Result<plan::Plan, plan::Refusal> {
    plan_with(root, manifest, &options())
}

fn plan_with(root: &Path, manifest: &Path, o: &Options) -> Result<plan::Plan, plan::Refusal> {
    let m = Manifest::load(manifest).unwrap();
    let r = Root::new(root.canonicalize().unwrap());
    let p = probe::probe(&r, &m, None);
    plan::plan(&p, &m, o)
}

fn ids(p: &plan::Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id).collect()
}

fn contains_bytes(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn image_first_run_does_everything_second_nothing_undo_restores() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    // The Pi's kernel package, which setup holds.
    let dpkg = root.join("var/lib/dpkg/status");
    let mut status = fs::read_to_string(&dpkg).unwrap();
    status.push_str(
        "\nPackage: linux-image-rpi-v8\nStatus: install ok installed\nVersion: 1:6.12.47-1+rpt1\n",
    );
    fs::write(&dpkg, status).unwrap();
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let config = root.join("boot/firmware/config.txt");
    let original = fs::read(&config).unwrap();

    let before = plan_for(&root, &m).unwrap();
    assert_eq!(
        ids(&before),
        [
            "fetch",
            "apt-deps",
            "prepare",
            "build",
            "install-modules",
            "dkms",
            "kernel-hold",
            "apt-pin",
            "userspace",
            "blacklist-nouveau",
            "device-nodes",
            "boot-config"
        ]
    );
    assert!(before
        .skipped
        .iter()
        .any(|k| k.id == "load-modules" && k.reason.contains("not a running system")));
    // The host's real headers (Debian 6.1.0-57) carry the 4-argument pci_resize_resource():
    // the plan says so and applies pigpu's compatibility patch, which the fixture's nv-pci.c
    // needs to compile against them.
    let why = before.target_reason.join("\n");
    assert!(
        why.contains("pci_resize_resource() takes 4 arguments"),
        "{why}"
    );
    assert!(why.contains("include/linux/pci.h:"), "{why}");
    let prep = &before.steps[2];
    assert!(
        prep.detail
            .contains("compatibility patch(es) for this kernel: Call pci_resize_resource()"),
        "{}",
        prep.detail
    );
    assert!(
        before.steps[3].detail.contains("SYSSRC=")
            && before.steps[3].detail.contains("-common SYSOUT="),
        "{}",
        before.steps[3].detail
    );

    let mut host = RecordingHost::default();
    let out = setup(&root, &m, &[], &mut host).unwrap();
    assert_eq!(out, Outcome::Ok);

    // Real Kbuild output, patched by the series, installed where modules_install put it, indexed.
    let kdir = root
        .join("lib/modules")
        .join(&rel)
        .join("kernel/drivers/video");
    let nv = fs::read(kdir.join("nvidia.ko")).expect("nvidia.ko installed");
    assert!(&nv[..4] == b"\x7fELF");
    assert!(contains_bytes(&nv, "pigpu_patch=0001-query-coherency"));
    let uvm = fs::read(kdir.join("nvidia-uvm.ko")).unwrap();
    assert!(contains_bytes(&uvm, "pigpu_patch=0002-uvm-flush"));
    assert!(contains_bytes(&uvm, &format!("vermagic={rel} ")));
    let dep = fs::read_to_string(root.join("lib/modules").join(&rel).join("modules.dep")).unwrap();
    assert!(dep.contains("kernel/drivers/video/nvidia.ko:"), "{dep}");
    // Boot config: our block, everything else kept.
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.starts_with(std::str::from_utf8(&original).unwrap()));
    assert!(
        text.contains("[pi5]\nkernel=kernel8.img\ndtparam=pciex1\n[all]\n"),
        "{text}"
    );
    // Userspace via the stand-in installer.
    let args = fs::read_to_string(root.join("var/log/fake-nvidia-installer.args")).unwrap();
    assert_eq!(args, "--no-kernel-modules\n--silent\n");
    assert!(root
        .join("lib/firmware/nvidia/1.0.0/gsp_ga10x.bin")
        .is_file());
    // Small files and DKMS.
    assert!(
        fs::read_to_string(root.join("etc/modprobe.d/pigpu-blacklist-nouveau.conf"))
            .unwrap()
            .contains("blacklist nouveau")
    );
    assert!(
        fs::read_to_string(root.join("etc/modprobe.d/pigpu-nvidia.conf"))
            .unwrap()
            .contains("NVreg_DeviceFileGID=44")
    );
    assert!(
        fs::read_to_string(root.join("usr/src/nvidia-1.0.0/dkms.conf"))
            .unwrap()
            .contains("PACKAGE_VERSION=\"1.0.0\"")
    );
    assert!(root
        .join("usr/src/nvidia-1.0.0/kernel-open/PATCHED")
        .is_file());
    assert_eq!(
        host.calls,
        ["apt-get install dkms", "dkms add -m nvidia -v 1.0.0", "apt-mark hold linux-image-rpi-v8", "run sh /var/lib/pigpu/work/nvidia-1.0.0/fake-installer.run --no-kernel-modules --silent"]
    );
    // The hold as dpkg records it, and the APT pin.
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: linux-image-rpi-v8\nStatus: hold ok installed"),
        "{status}"
    );
    let pin = fs::read_to_string(root.join("etc/apt/preferences.d/pigpu-nvidia.pref")).unwrap();
    assert!(
        pin.contains("Package: nvidia-* libnvidia-* libcuda1 firmware-nvidia-gsp\nPin: release *\nPin-Priority: -1\n"),
        "{pin}"
    );
    assert!(
        !root.join("var/lib/pigpu/work").exists(),
        "build objects are cleaned up"
    );
    let requests = s.seen().len();
    assert_eq!(requests, 3, "{:?}", s.seen());

    // Second run: nothing to do, nothing downloaded, nothing changed.
    let after = plan_for(&root, &m).unwrap();
    assert!(after.steps.is_empty(), "{}", after.render());
    let config_after = fs::read(&config).unwrap();
    let mut host2 = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host2).unwrap(), Outcome::Ok);
    assert!(host2.calls.is_empty(), "{:?}", host2.calls);
    assert_eq!(s.seen().len(), requests);
    assert_eq!(fs::read(&config).unwrap(), config_after);

    // Undo: config.txt byte for byte, everything pigpu installed gone.
    let mut host3 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &["--undo"], &mut host3).unwrap(),
        Outcome::Ok
    );
    assert_eq!(fs::read(&config).unwrap(), original);
    assert!(!kdir.join("nvidia.ko").exists() && !kdir.join("nvidia-uvm.ko").exists());
    // The root had no module index: the one pigpu's depmod made goes too, as do the
    // directories setup created (this root has no /etc/udev/rules.d, /etc/modules-load.d, ...).
    assert_eq!(
        fs::read_dir(root.join("lib/modules").join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<std::collections::BTreeSet<_>>(),
        ["build", "source"]
            .iter()
            .filter(|n| root.join("lib/modules").join(&rel).join(n).exists())
            .map(|n| n.to_string())
            .collect()
    );
    assert_setup_dirs_gone(&root);
    assert!(!root.join("lib/firmware/nvidia/1.0.0").exists());
    assert!(!root.join("usr/src/nvidia-1.0.0").exists());
    assert!(!root.join("etc/modprobe.d/pigpu-nvidia.conf").exists());
    assert!(!root.join("var/lib/pigpu").exists());
    assert_eq!(
        host3.calls,
        [
            "run /usr/bin/nvidia-uninstall --silent",
            "apt-mark unhold linux-image-rpi-v8",
            "dkms remove nvidia/1.0.0 --all",
            "apt-mark auto dkms"
        ]
    );
    assert!(!root
        .join("etc/apt/preferences.d/pigpu-nvidia.pref")
        .exists());
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: linux-image-rpi-v8\nStatus: install ok installed"),
        "{status}"
    );
}

#[test]
fn wrong_digest_or_tree_refuses_and_changes_nothing() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    let s = serve(t.path());
    let config = root.join("boot/firmware/config.txt");
    let original = fs::read(&config).unwrap();
    let dpkg = fs::read(root.join("var/lib/dpkg/status")).unwrap();

    let real = "948667f90a622b59e8ec782e789dda755ca3e8109e7fe0d323880af30542324f";
    let m = manifest(t.path(), &s.base, |x| x.replace(real, &"ab".repeat(32)));
    let mut host = RecordingHost::default();
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(
        e.contains("checksum mismatch for userspace installer 1.0.0"),
        "{e}"
    );
    assert!(e.contains(&format!("got {real}")), "{e}");
    assert!(host.calls.is_empty());
    assert_eq!(fs::read(&config).unwrap(), original);
    assert_eq!(fs::read(root.join("var/lib/dpkg/status")).unwrap(), dpkg);
    assert!(!root.join("var/lib/pigpu/state.json").exists());
    assert!(!root.join("lib/modules").join(&rel).join("kernel").exists());
    assert!(!root.join("var/cache/pigpu/fake-installer.run").exists());
    assert!(!root
        .join("var/cache/pigpu/fake-installer.run.part")
        .exists());

    let m = manifest(t.path(), &s.base, |x| {
        x.replace(
            "68211631596319c8838111bcf8b68a528af565df",
            "0123456789012345678901234567890123456789",
        )
    });
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(
        e.contains(
            "git tree 68211631596319c8838111bcf8b68a528af565df is not the pinned tree 0123456789"
        ),
        "{e}"
    );
    assert!(host.calls.is_empty());
    assert_eq!(fs::read(&config).unwrap(), original);
    assert!(!root.join("var/lib/pigpu/state.json").exists());
    // Probe case 14 (D17): the refused tree leaves no work directory behind.
    assert!(!root.join("var/lib/pigpu/work").exists());
}

#[test]
fn download_killed_half_way_resumes() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2684);
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    s.stall_on(Some("/fake-installer.run"));
    let mut child = util::pigpu()
        .args(["setup", "--root"])
        .arg(&root)
        .arg("--manifest")
        .arg(&m)
        .args(["--yes", "-j2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.has_stalled() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Kill it once the first half is on disk (a loaded machine may take a moment to write it).
    let part = root.join("var/cache/pigpu/fake-installer.run.part");
    while fs::metadata(&part).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "nothing written");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let have = fs::metadata(&part).expect("partial download kept").len();
    let full = fs::metadata(fixtures().join("fake-installer.run"))
        .unwrap()
        .len();
    assert!(have > 0 && have < full, "{have} of {full}");
    assert!(
        !root.join("var/lib/pigpu/state.json").exists(),
        "killed during fetch: nothing changed yet"
    );

    s.stall_on(None);
    let mut host = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host).unwrap(), Outcome::Ok);
    let ranged: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|r| r.path == "/fake-installer.run")
        .collect();
    assert_eq!(
        ranged.last().unwrap().range.as_deref(),
        Some(format!("bytes={have}-").as_str()),
        "{ranged:?}"
    );
    // The resumed file passed its sha256 pin and the installer ran.
    assert!(root
        .join("lib/firmware/nvidia/1.0.0/gsp_tu10x.bin")
        .is_file());
    assert!(nvidia_ko(&root, &rel).is_file());
}

#[test]
fn failing_build_rolls_back_and_names_the_first_error() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    let s = serve(t.path());
    let with_bad_patch = |x: String| {
        x.replace("result_tree = \"91a5c096b47a8f3cc04f41cb36bf1edad3fc7b18\"\n", "")
            .replace(
                "[userspace]",
                &format!("[[series.patch]]\nsubject = \"Break the build (fixture)\"\nurl = \"{}/patches/0003-break-build.patch\"\n\n[userspace]", s.base),
            )
    };
    let m = manifest(t.path(), &s.base, with_bad_patch);
    let config = root.join("boot/firmware/config.txt");
    let original = fs::read(&config).unwrap();

    // Without a result tree the server-sent patches are unpinned: refused unless accepted.
    let mut host = RecordingHost::default();
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(
        e.contains("patch 1/3 (Query OS for chipset I/O cache coherency (fixture))"),
        "{e}"
    );
    assert!(e.contains("--accept-unpinned"), "{e}");
    assert!(host.calls.is_empty());

    let e = chain(&setup(&root, &m, &["--accept-unpinned"], &mut host).unwrap_err());
    assert!(
        e.contains("step build failed; this run's changes were rolled back"),
        "{e}"
    );
    assert!(e.contains("nvidia-uvm/uvm.c:8:"), "{e}");
    assert!(
        e.contains("error: expected expression before ';' token"),
        "{e}"
    );
    let log = root.join(format!("var/log/pigpu/build-1.0.0-{rel}.log"));
    assert!(e.contains(&log.display().to_string()), "{e}");
    assert!(fs::read_to_string(&log).unwrap().contains("int broken = ;"));
    // Rolled back: the package pigpu installed is handed back to apt, no state, nothing installed.
    assert_eq!(host.calls, ["apt-get install dkms", "apt-mark auto dkms"]);
    assert!(!root.join("var/lib/pigpu/state.json").exists());
    assert_eq!(fs::read(&config).unwrap(), original);
    assert!(!root.join("lib/modules").join(&rel).join("kernel").exists());
}

#[test]
fn running_system_stops_for_the_reboot_and_resumes() {
    let t = TempDir::new().unwrap();
    let (root, rel) = make_root(
        t.path(),
        &RootOpts {
            gpu: Some(0x24b0),
            running: Some("6.12.47+rpt-rpi-2712".to_string()),
            ..Default::default()
        },
    );
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let original = fs::read(root.join("boot/firmware/config.txt")).unwrap();
    let mut host = RecordingHost::default();
    assert_eq!(
        setup(
            &root,
            &m,
            &["--persist", "none", "--pcie-gen", "3"],
            &mut host
        )
        .unwrap(),
        Outcome::Ok
    );
    let text = fs::read_to_string(root.join("boot/firmware/config.txt")).unwrap();
    assert!(
        text.contains("kernel=kernel8.img\ndtparam=pciex1\ndtparam=pciex1_gen=3\n"),
        "{text}"
    );
    assert!(
        !host.calls.iter().any(|c| c.starts_with("load")),
        "{:?}",
        host.calls
    );

    // Not rebooted yet: blocked, exit 1, nothing runs.
    let mut host2 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &[], &mut host2).unwrap(),
        Outcome::Problems
    );
    assert!(host2.calls.is_empty());

    // "Reboot" into the 4K kernel: the next run loads the modules and is then done.
    fs::write(root.join("proc/sys/kernel/osrelease"), format!("{rel}\n")).unwrap();
    fs::write(
        root.join("proc/sys/kernel/random/boot_id"),
        "22222222-2222-2222-2222-222222222222\n",
    )
    .unwrap();
    let chosen = Options {
        pcie_gen: 3,
        persist: Persist::None,
        ..options()
    };
    let p = plan_with(&root, &m, &chosen).unwrap();
    assert_eq!(ids(&p), ["load-modules"], "{}", p.render());
    // A complete run on a running system ends with the doctor's checks. On this fake root they
    // find real gaps (no GPU bound to the driver, no Vulkan loader), so setup exits 1; on the
    // offline image above they are skipped and it exits 0.
    let mut host3 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &[], &mut host3).unwrap(),
        Outcome::Problems
    );
    assert_eq!(host3.calls, ["load nvidia nvidia-uvm"]);
    let mut host4 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &[], &mut host4).unwrap(),
        Outcome::Problems
    );
    assert!(host4.calls.is_empty(), "{:?}", host4.calls);

    // Changing a choice later edits config.txt again (and asks for a reboot again) ...
    assert_eq!(
        setup(&root, &m, &["--pcie-gen", "2"], &mut host4).unwrap(),
        Outcome::Ok
    );
    let text = fs::read_to_string(root.join("boot/firmware/config.txt")).unwrap();
    assert!(
        text.contains("kernel=kernel8.img\ndtparam=pciex1\n[all]"),
        "{text}"
    );
    // ... and --undo still restores the file from before the first run, byte for byte.
    assert_eq!(
        setup(&root, &m, &["--undo"], &mut host4).unwrap(),
        Outcome::Ok
    );
    assert_eq!(
        fs::read(root.join("boot/firmware/config.txt")).unwrap(),
        original
    );
}

#[test]
fn plans_for_16k_no_gpu_and_pre_turing_roots() {
    let t = TempDir::new().unwrap();
    let m = manifest(t.path(), "http://127.0.0.1:9", |x| x);

    let k16 = TempDir::new().unwrap();
    let (root, _) = make_root(
        k16.path(),
        &RootOpts {
            gpu: Some(0x2204),
            only_16k: true,
            ..Default::default()
        },
    );
    let p = plan_for(&root, &m).unwrap();
    assert_eq!(ids(&p), ["fetch", "kernel-4k"]);
    let k = &p.steps[1];
    assert!(k.reboot);
    match &k.op {
        Op::Kernel4k { packages, text, .. } => {
            assert_eq!(packages, &["linux-image-rpi-v8", "linux-headers-rpi-v8"]);
            assert!(text.contains("kernel=kernel8.img"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        k.detail.contains("6.12.47+rpt-rpi-2712 (16K pages)"),
        "{}",
        k.detail
    );
    // --kernel-release naming the 16K kernel, or one that is not there, is refused.
    let mf = Manifest::load(&m).unwrap();
    let r = Root::new(root.canonicalize().unwrap());
    for (rel, want) in [
        ("6.12.47+rpt-rpi-2712", "uses 16K pages"),
        (
            "6.6.6-rpi-v8",
            "6.6.6-rpi-v8 is not installed under /lib/modules",
        ),
    ] {
        let p = probe::probe(&r, &mf, Some(rel));
        let e = plan::plan(&p, &mf, &options()).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }

    // Never point the firmware at an image that is not there.
    let noimg = TempDir::new().unwrap();
    let (root, _) = make_root(noimg.path(), &RootOpts::default());
    fs::remove_file(root.join("boot/firmware/kernel8.img")).unwrap();
    let e = plan_for(&root, &m).unwrap_err().to_string();
    assert!(e.contains("kernel8.img is missing"), "{e}");

    let none = TempDir::new().unwrap();
    let (root, _) = make_root(none.path(), &RootOpts::default());
    let p = plan_for(&root, &m).unwrap();
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("no NVIDIA GPU on the PCI bus")),
        "{:?}",
        p.notes
    );
    assert!(ids(&p).contains(&"build"));
    assert!(!ids(&p).contains(&"load-modules"));

    let old = TempDir::new().unwrap();
    let (root, _) = gpu_root(old.path(), 0x1b80);
    let e = plan_for(&root, &m).unwrap_err().to_string();
    assert!(
        e.contains("10de:1b80 at 0001:01:00.0") && e.contains("older than Turing"),
        "{e}"
    );
    let config = fs::read(root.join("boot/firmware/config.txt")).unwrap();
    let mut host = RecordingHost::default();
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(e.contains("older than Turing"), "{e}");
    assert!(host.calls.is_empty());
    assert_eq!(
        fs::read(root.join("boot/firmware/config.txt")).unwrap(),
        config
    );
    assert!(!root.join("var/cache/pigpu").exists());
}

#[test]
fn dry_run_json_through_the_binary() {
    let t = TempDir::new().unwrap();
    let (root, _) = gpu_root(t.path(), 0x2204);
    let m = manifest(t.path(), "http://127.0.0.1:9", |x| x);
    let out = util::pigpu()
        .args(["setup", "--dry-run", "--json", "--root"])
        .arg(&root)
        .arg("--manifest")
        .arg(&m)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["id"], "fetch");
    for s in steps {
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["action", "detail", "id", "reboot"]);
    }
    assert_eq!(steps.last().unwrap()["id"], "boot-config");
    assert_eq!(steps.last().unwrap()["reboot"], true);
    assert!(!root.join("var/lib/pigpu").exists() && !root.join("var/cache/pigpu").exists());

    // A bad manifest is named, exit 2.
    let bad = t.path().join("bad.toml");
    fs::write(&bad, "schema = 1\ndriver = \"x\"\n").unwrap();
    let out = util::pigpu()
        .args(["setup", "--dry-run", "--root"])
        .arg(&root)
        .arg("--manifest")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

#[test]
fn choices_are_asked_on_a_terminal_and_no_changes_nothing() {
    let t = TempDir::new().unwrap();
    let (root, _) = gpu_root(t.path(), 0x2204);
    let m = manifest(t.path(), "http://127.0.0.1:9", |x| x);
    let config = fs::read(root.join("boot/firmware/config.txt")).unwrap();
    let argv = [
        "setup",
        "--root",
        root.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ];
    let w = Wrap::try_parse_from(argv).unwrap();
    // Gen 3, hold the kernel, then "no" to the plan.
    let mut answers = Scripted {
        answers: [1, 1, 0].into(),
        ..Default::default()
    };
    let mut host = RecordingHost::default();
    assert_eq!(
        run_with(w.args, &mut host, &mut answers).unwrap(),
        Outcome::Ok
    );
    assert_eq!(
        answers.asked,
        [
            "PCIe speed for the external connector",
            "Keep the modules working across kernel updates with",
            "Apply this plan?"
        ]
    );
    assert!(host.calls.is_empty());
    assert_eq!(
        fs::read(root.join("boot/firmware/config.txt")).unwrap(),
        config
    );
    assert!(!root.join("var/lib/pigpu").exists() && !root.join("var/cache/pigpu").exists());

    // Without a terminal and without --yes, the first question is an error naming --yes.
    let w = Wrap::try_parse_from(argv).unwrap();
    let e = run_with(w.args, &mut host, &mut Prompts::NoTerminal).unwrap_err();
    assert!(e.to_string().contains("pass --yes"), "{e}");
}

#[test]
fn accepted_unpinned_digests_are_recorded() {
    let t = TempDir::new().unwrap();
    let (root, _) = make_root(t.path(), &RootOpts::default());
    let s = serve(t.path());
    // No result tree: the server-sent patch has no pin at all.
    let m = manifest(t.path(), &s.base, |x| {
        x.replace(
            "result_tree = \"91a5c096b47a8f3cc04f41cb36bf1edad3fc7b18\"\n",
            "",
        )
    });
    let mut host = RecordingHost::default();
    let out = setup(
        &root,
        &m,
        &["--accept-unpinned", "--persist", "none"],
        &mut host,
    )
    .unwrap();
    assert_eq!(out, Outcome::Ok);
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("var/lib/pigpu/state.json")).unwrap()).unwrap();
    let digests: Vec<&str> = state["accepted_unpinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"].as_str().unwrap())
        .collect();
    // sha256sum of the patch, and the tree git computes for the patched source
    // (scripts/ref/setup-fixture-pins.sh).
    assert_eq!(
        digests,
        [
            "sha256:a209b093a6f80677d1ceeeb028fd1de33b64696e96d67be22e73ef967c2b8b01",
            "git-tree:91a5c096b47a8f3cc04f41cb36bf1edad3fc7b18"
        ]
    );
}

/// What setup refuses before it changes anything, in its order: a `--root` that is not a
/// directory, then one whose path make and the shell would split, then a state file and its
/// copy that are both unreadable. None of them calls the host or touches the root's files.
#[test]
fn a_bad_root_then_an_unusable_state_are_refused_in_order() {
    let t = TempDir::new().unwrap();
    let m = manifest(t.path(), "http://127.0.0.1:9", |x| x);
    let mut host = RecordingHost::default();
    let file = t.path().join("a-file");
    fs::write(&file, "").unwrap();
    let e = setup(&file, &m, &[], &mut host).unwrap_err();
    assert_eq!(
        chain(&e),
        format!("--root {}: not a directory", file.display())
    );

    let unusable_state = |root: &Path| {
        let dir = root.join("var/lib/pigpu");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("state.json"), "not json").unwrap();
        fs::write(dir.join("state.json.copy"), "not json either").unwrap();
    };
    // A path with a space and an unusable state: the path is refused first.
    let (root, _) = gpu_root(&t.path().join("with space"), 0x2204);
    unusable_state(&root);
    let e = setup(&root, &m, &[], &mut host).unwrap_err();
    let dir = root.canonicalize().unwrap();
    assert!(
        chain(&e).starts_with(&format!(
            "--root {}: the path holds ' '; the kernel build passes it to make and the shell",
            dir.display()
        )),
        "{e:#}"
    );

    // The same state under a plain path: neither copy says what pigpu installed.
    let (root, _) = gpu_root(&t.path().join("plain"), 0x2204);
    unusable_state(&root);
    let config = fs::read(root.join("boot/firmware/config.txt")).unwrap();
    let e = setup(&root, &m, &[], &mut host).unwrap_err();
    let dir = root.canonicalize().unwrap();
    let msg = chain(&e);
    assert!(
        msg.starts_with(&format!(
            "state file {}: not pigpu state JSON: ",
            dir.join("var/lib/pigpu/state.json").display()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "; its copy {} is unusable too, so pigpu cannot tell what it installed. Put back a \
             good copy, or move both away to start over (then `--undo` cannot remove the \
             earlier install)",
            dir.join("var/lib/pigpu/state.json.copy").display()
        )),
        "{msg}"
    );
    assert!(host.calls.is_empty(), "{:?}", host.calls);
    assert_eq!(
        fs::read(root.join("boot/firmware/config.txt")).unwrap(),
        config
    );
    assert_eq!(
        fs::read_to_string(root.join("var/lib/pigpu/state.json.copy")).unwrap(),
        "not json either"
    );
}
