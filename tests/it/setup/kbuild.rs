//! setup's build step on NVIDIA's real `kernel-open` tree (Debian's `nvidia-open-kernel-source`,
//! 535.261.03 from bookworm's contrib) against Debian's real split kernel headers, fetched into
//! `~/.cache/pigpu/kbuild` by `scripts/fetch-kernel-sources.sh` (never committed). The commands
//! are the ones setup and its dkms.conf run: `kbuild::make_command` with the trees
//! `kbuild::kernel_trees` finds, after the compatibility patches `manifest::decide_compat` picks from the
//! probe of the headers. The native amd64 build runs in the default suite (~250 CPU-seconds);
//! the DKMS line and the arm64 cross build are `#[ignore]`d and run by `scripts/just test-kbuild`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pigpu::provision::files;
use pigpu::provision::kapi::{self, ApiChange, Verdict};
use pigpu::provision::kbuild::{self, KernelTrees};
use pigpu::provision::manifest::{self, Manifest};
use pigpu::sys::command::Cmd;
use pigpu::sys::Root;
use tempfile::TempDir;

/// The modules NVIDIA's kernel-open tree builds.
const MODULES: [&str; 5] = [
    "nvidia",
    "nvidia-uvm",
    "nvidia-modeset",
    "nvidia-drm",
    "nvidia-peermem",
];

pub fn cache() -> PathBuf {
    std::env::var_os("PIGPU_KBUILD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/pigpu/kbuild")
        })
}

/// The cached NVIDIA tree, or `None` (skip) unless the suite requires its inputs.
fn nvidia_tree() -> Option<PathBuf> {
    tree_in_cache("nvidia-open-kernel")
}

/// The same tree from Debian's arm64 package: its prebuilt `nv-kernel.o_binary` is aarch64 code
/// (the amd64 package's blob cannot be linked into an arm64 module).
fn nvidia_tree_arm64() -> Option<PathBuf> {
    tree_in_cache("nvidia-open-kernel-arm64")
}

fn tree_in_cache(name: &str) -> Option<PathBuf> {
    let t = cache().join(name);
    if t.join("conftest.sh").is_file() {
        return Some(t.canonicalize().unwrap());
    }
    if std::env::var_os("PIGPU_REQUIRE_MODELS").is_some() {
        panic!(
            "{} is missing: run scripts/fetch-kernel-sources.sh",
            t.display()
        );
    }
    eprintln!(
        "skipped: {} missing (scripts/fetch-kernel-sources.sh)",
        t.display()
    );
    None
}

/// The installed amd64 headers' release (the one with split `build` + `source`).
fn native_release() -> String {
    let mut found: Vec<String> = fs::read_dir("/lib/modules")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|r| Path::new(&format!("/lib/modules/{r}/source/Makefile")).is_file())
        .collect();
    found.sort();
    found.pop().expect(
        "no /lib/modules/<rel>/source: install linux-headers-amd64 (scripts/install-deps.sh)",
    )
}

/// A copy of the NVIDIA tree laid out like NVIDIA's repository (`<top>/kernel-open`), so the
/// patches' `kernel-open/...` paths apply with `-p1` as they do on the real source.
fn copy_tree(src: &Path, t: &TempDir) -> PathBuf {
    let top = t.path().join("nvidia");
    fs::create_dir_all(&top).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(top.join("kernel-open"))
        .status()
        .unwrap();
    assert!(st.success());
    top
}

/// Applies what the probe of `trees` asks for, as the prepare step does; returns the decision's
/// reasons.
fn prepare(top: &Path, trees: &KernelTrees, log: &Path) -> Vec<String> {
    let m = &Manifest::builtin()[0];
    let checks = kapi::probe(&trees.source);
    let d = manifest::decide_compat(&m.driver, &m.compat, &trees.release, &checks).unwrap();
    for c in &d.apply {
        let f = top.join("compat.patch");
        fs::write(&f, m.compat_bytes(c).unwrap()).unwrap();
        kbuild::apply_patch(&Default::default(), top, &f, log).unwrap();
    }
    d.reasons
}

/// Every module built, for `release`, after every conftest ran.
fn assert_built(dir: &Path, release: &str, log: &Path) {
    let text = fs::read_to_string(log).unwrap();
    assert!(!text.contains("fatal error"), "{}", tail(&text));
    assert!(!text.contains("conftest failed"), "{}", tail(&text));
    let conftests = text.lines().filter(|l| l.contains("CONFTEST: ")).count();
    assert!(conftests > 300, "only {conftests} conftests ran");
    for h in ["functions.h", "types.h", "symbols.h", "headers.h"] {
        assert!(dir.join("conftest").join(h).is_file(), "conftest/{h}");
    }
    for m in MODULES {
        let ko = fs::read(dir.join(format!("{m}.ko")))
            .unwrap_or_else(|e| panic!("{m}.ko: {e}\n{}", tail(&text)));
        let needle = format!("vermagic={release} ");
        assert!(
            ko.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{m}.ko is not built for {release}"
        );
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn setup_build_step_builds_nvidia_kernel_open_against_split_headers() {
    let Some(src) = nvidia_tree() else { return };
    let t = TempDir::new().unwrap();
    let top = copy_tree(&src, &t);
    let release = native_release();
    let trees = kbuild::kernel_trees(&Root::live(), &release).unwrap();
    // Split headers: the source half is not the build half.
    assert_ne!(trees.source, trees.output);
    assert!(trees.source.join("include/linux/pci.h").is_file());
    assert!(trees.output.join(".config").is_file());

    let log = t.path().join("build.log");
    let reasons = prepare(&top, &trees, &log);
    eprintln!("{}", reasons.join("\n"));
    let t0 = Instant::now();
    let cmd =
        kbuild::make_command(&top.join("kernel-open"), "modules", 2, &trees, &[], &[]).unwrap();
    let words: Vec<String> = cmd
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(words.contains(&format!("SYSSRC={}", trees.source.display())));
    assert!(words.contains(&format!("SYSOUT={}", trees.output.display())));
    cmd.run_logged(&log, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&fs::read_to_string(&log).unwrap())));
    eprintln!(
        "built NVIDIA kernel-open for {release} in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_built(&top.join("kernel-open"), &release, &log);
}

#[test]
fn probe_reads_the_prototype_and_the_plan_patches_or_refuses() {
    // The real headers, and a copy of their source half with the one declaration changed.
    let release = native_release();
    let trees = kbuild::kernel_trees(&Root::live(), &release).unwrap();
    let pci_h = fs::read_to_string(trees.source.join("include/linux/pci.h")).unwrap();
    let real = kapi::probe(&trees.source);
    let (three, four) = {
        let t = TempDir::new().unwrap();
        let make = |text: &str| {
            let d = TempDir::new_in(t.path()).unwrap();
            fs::create_dir_all(d.path().join("include/linux")).unwrap();
            fs::write(d.path().join("include/linux/pci.h"), text).unwrap();
            kapi::probe(d.path())
        };
        let decl = kapi::declared_arity(&pci_h, "pci_resize_resource").unwrap();
        // Rewrite the prototype with 3 and with 4 parameters, whatever the real one has.
        let start = pci_h.find("pci_resize_resource(struct pci_dev").unwrap();
        let end = start + pci_h[start..].find(");").unwrap() + 2;
        let with = |params: &str| {
            format!(
                "{}pci_resize_resource({params});{}",
                &pci_h[..start],
                &pci_h[end..]
            )
        };
        let three = make(&with("struct pci_dev *dev, int i, int size"));
        let four = make(&with(
            "struct pci_dev *dev, int i, int size,\n\t\t\t\t     int exclude_bars",
        ));
        eprintln!("real header: {} parameters at line {}", decl.0, decl.1);
        (three, four)
    };
    assert!(
        matches!(three[0].verdict, Verdict::Absent { .. }),
        "{three:?}"
    );
    assert!(
        matches!(four[0].verdict, Verdict::Present { .. }),
        "{four:?}"
    );
    assert_eq!(real[0].change, ApiChange::PciResizeResourceExcludeBars);
    // Debian 6.1.0-57 carries the 4-argument prototype (a backport of Linux 6.19's change).
    if release.starts_with("6.1.0-57") {
        assert!(
            matches!(real[0].verdict, Verdict::Present { .. }),
            "{real:?}"
        );
    }

    let m = &Manifest::builtin()[0];
    let d = manifest::decide_compat(&m.driver, &m.compat, "x", &three).unwrap();
    assert!(d.apply.is_empty());
    let d = manifest::decide_compat(&m.driver, &m.compat, "x", &four).unwrap();
    assert_eq!(d.apply.len(), 1);
    assert!(d.reasons[0].contains("applying pigpu's compatibility patch"));
    // Without a patch for it, the plan refuses with the reason and the way out.
    let e = manifest::decide_compat(&m.driver, &[], "6.19.1-rpi-v8", &four).unwrap_err();
    assert!(
        e.contains("kernel 6.19.1-rpi-v8 cannot build NVIDIA 580.95.05")
            && e.contains("4 arguments")
            && e.contains("apt-mark hold"),
        "{e}"
    );
}

/// The generated dkms.conf's MAKE[0] line, run the way DKMS 3 runs it: `${kernelver}` set, a
/// leading bare `make` given `-j`/`KERNELRELEASE=` (the quoted `'make'` is not), evaluated by
/// bash in the module's source tree.
#[test]
#[ignore = "whole NVIDIA build (~250 CPU-s); scripts/just test-kbuild"]
fn dkms_make_line_builds_nvidia_kernel_open() {
    let Some(src) = nvidia_tree() else { return };
    let t = TempDir::new().unwrap();
    let top = copy_tree(&src, &t);
    let release = native_release();
    let trees = kbuild::kernel_trees(&Root::live(), &release).unwrap();
    let log = t.path().join("dkms.log");
    prepare(&top, &trees, &log);
    // A manifest for this tree: make runs in kernel-open/ (the Debian tree has no top Makefile).
    let text = pigpu::provision::manifest::BUILTIN[0].1.replace(
        "modules_dir = \"kernel-open\"",
        "modules_dir = \"kernel-open\"\nmake_dir = \"kernel-open\"",
    );
    let m = Manifest::parse(&text, "test", None).unwrap();
    let conf = files::dkms_conf(&m);
    let line = conf
        .lines()
        .find_map(|l| l.strip_prefix("MAKE[0]=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    assert!(!line.contains("SYSSRC"), "{line}");
    let script = format!(
        "kernelver={release}; make_command=\"{line}\"; cmd=\"${{make_command/#make/make -j2 KERNELRELEASE=$kernelver}}\"; echo \"$ $cmd\"; eval \"$cmd\""
    );
    let t0 = Instant::now();
    Cmd::new("bash")
        .arg("-c")
        .arg(&script)
        .dir(&top)
        .env("LANG", "C")
        .env("LC_MESSAGES", "C")
        .run_logged(&log, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&fs::read_to_string(&log).unwrap())));
    eprintln!("DKMS line built in {:.0} s", t0.elapsed().as_secs_f64());
    assert_built(&top.join("kernel-open"), &release, &log);
}

/// arm64, cross-compiled: the unpacked `linux-headers-<abi>-arm64` tree is the root setup builds
/// for (`--root`-style), with the cross compiler CI installs.
#[test]
#[ignore = "whole NVIDIA cross build (~250 CPU-s); scripts/just test-kbuild"]
fn setup_build_step_cross_builds_for_arm64() {
    let Some(src) = nvidia_tree_arm64() else {
        return;
    };
    let root_dir = fs::read_dir(cache())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("arm64-root-")
        })
        .expect("no arm64 headers in the cache: run scripts/fetch-kernel-sources.sh");
    let root = Root::new(root_dir.canonicalize().unwrap());
    let release = fs::read_dir(root.path("/lib/modules"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    let t = TempDir::new().unwrap();
    let top = copy_tree(&src, &t);
    let trees = kbuild::kernel_trees(&root, &release).unwrap();
    assert_ne!(trees.source, trees.output);
    let log = t.path().join("cross.log");
    prepare(&top, &trees, &log);
    let cross = [
        "ARCH=arm64".to_string(),
        "CROSS_COMPILE=aarch64-linux-gnu-".to_string(),
        "CC=aarch64-linux-gnu-gcc".to_string(),
    ];
    let t0 = Instant::now();
    kbuild::make_command(&top.join("kernel-open"), "modules", 2, &trees, &cross, &[])
        .unwrap()
        .run_logged(&log, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&fs::read_to_string(&log).unwrap())));
    eprintln!(
        "cross-built for {release} in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_built(&top.join("kernel-open"), &release, &log);
    let ko = fs::read(top.join("kernel-open/nvidia.ko")).unwrap();
    // ELF e_machine 183 = AArch64.
    assert_eq!(u16::from_le_bytes([ko[18], ko[19]]), 183);
}
