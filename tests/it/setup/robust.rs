//! Regression tests for the reliability probe of 2026-12 (issue 12), on fake roots with the
//! local HTTP server: the lock, symlinks that lead out of the root, a damaged state file, closed
//! pipes and a kill during the build, archives with special files and bad modes, a bad cached
//! download, an unwritable config.txt, and root paths a shell would act on. Two of them run
//! the real Kbuild build of the fixture (a few seconds each); the rest stop before any build.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn state_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// A fake root where the binary with `--persist none` needs no apt, DKMS or userspace step
/// (so it runs with the real host and no chroot), as the probe's `mkroot.sh` makes it.
pub(super) fn binary_ready_root(dir: &Path) -> (PathBuf, String) {
    let (root, rel) = gpu_root(dir, 0x2204);
    for f in [
        "lib/firmware/nvidia/1.0.0/gsp_ga10x.bin",
        "lib/firmware/nvidia/1.0.0/gsp_tu10x.bin",
        "usr/bin/nvidia-smi",
    ] {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "fixture\n").unwrap();
    }
    (root, rel)
}

pub(super) fn pigpu_setup(root: &Path, m: &Path) -> Command {
    let mut c = util::pigpu();
    c.args(["setup", "--root"])
        .arg(root)
        .arg("--manifest")
        .arg(m)
        .args(["--yes", "--persist", "none", "-j2"]);
    c
}

#[test]
fn a_second_run_or_undo_during_a_run_is_refused_with_the_holders_pid() {
    let t = TempDir::new().unwrap();
    let (root, _) = binary_ready_root(t.path());
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    // Run A stops in its download (the server sends half the file, then waits).
    s.stall_on(Some("/fake-installer.run"));
    let mut a = pigpu_setup(&root, &m)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.has_stalled() {
        assert!(t0.elapsed() < Duration::from_secs(60), "A never downloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    for extra in [&[][..], &["--undo"][..]] {
        let o = pigpu_setup(&root, &m).args(extra).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(&format!("another pigpu setup (PID {})", a.id())),
            "{extra:?}: {err}"
        );
    }
    // B changed nothing, and A's lock goes with A.
    a.kill().unwrap();
    a.wait().unwrap();
    let o = pigpu_setup(&root, &m).arg("--undo").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pigpu has installed nothing"));
    assert!(!root.join("var/lib/pigpu").exists());
}

/// The source tarball with every file world-writable, one setuid+setgid, and a `.git`
/// directory: git's tree id ignores all of that, so it passes the pin.
fn tampered_tarball(dir: &Path) -> Vec<u8> {
    let stage = dir.join("tampered");
    let top = stage.join("fixture-modules-1.0.0");
    fs::create_dir_all(&stage).unwrap();
    assert!(Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("srctree"))
        .arg(&top)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("find")
        .arg(&top)
        .args(["-type", "f", "-exec", "chmod", "0666", "{}", "+"])
        .status()
        .unwrap()
        .success());
    fs::set_permissions(top.join("README.md"), fs::Permissions::from_mode(0o6666)).unwrap();
    fs::create_dir_all(top.join(".git/hooks")).unwrap();
    fs::write(top.join(".git/hooks/post-checkout"), "#!/bin/sh\n").unwrap();
    let tgz = dir.join("tampered.tar.gz");
    assert!(Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&stage)
        .arg("fixture-modules-1.0.0")
        .status()
        .unwrap()
        .success());
    fs::read(tgz).unwrap()
}

#[test]
fn links_out_of_the_root_latin1_config_bad_modes_and_a_damaged_state() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    let s = serve(t.path());
    s.add(
        "/archive/fixture-modules-1.0.0.tar.gz",
        tampered_tarball(t.path()),
    );
    let m = manifest(t.path(), &s.base, |x| x);
    // Absolute links out of the root for two directories pigpu writes.
    let out = t.path().join("outside");
    fs::create_dir_all(out.join("m")).unwrap();
    fs::create_dir_all(out.join("v")).unwrap();
    symlink(out.join("m"), root.join("etc/modprobe.d")).unwrap();
    symlink(out.join("v"), root.join("var/lib/pigpu")).unwrap();
    // config.txt: a relative link to the real file, which has a Latin-1 comment.
    let fw = root.join("boot/firmware");
    let mut original = b"# Caf\xe9\n".to_vec();
    original.extend(fs::read(fw.join("config.txt")).unwrap());
    fs::remove_file(fw.join("config.txt")).unwrap();
    fs::write(fw.join("real-config.txt"), &original).unwrap();
    symlink("real-config.txt", fw.join("config.txt")).unwrap();

    let mut host = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host).unwrap(), Outcome::Ok);

    // Nothing was written outside the root: the links were followed inside it.
    let leaked: Vec<_> = walk(&out);
    assert!(leaked.is_empty(), "written outside the root: {leaked:?}");
    let inner = root.join(out.strip_prefix("/").unwrap());
    assert!(inner.join("m/pigpu-nvidia.conf").is_file());
    let state = inner.join("v/state.json");
    assert!(state.is_file());
    // The link is still a link, and every byte outside pigpu's block is kept.
    assert!(fs::symlink_metadata(fw.join("config.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    let now = fs::read(fw.join("real-config.txt")).unwrap();
    assert!(
        now.starts_with(&original),
        "{}",
        String::from_utf8_lossy(&now)
    );
    assert!(String::from_utf8_lossy(&now).contains("dtparam=pciex1"));
    // The DKMS copy of the source: no world-writable, setuid or setgid file, no .git.
    let dkms = root.join("usr/src/nvidia-1.0.0");
    for f in walk(&dkms) {
        let mode = fs::symlink_metadata(&f).unwrap().mode();
        assert_eq!(mode & 0o6002, 0, "{} has mode {mode:o}", f.display());
        assert!(!f.components().any(|c| c.as_os_str() == ".git"), "{f:?}");
    }

    // The probe's recipe for case 3: the state file moved away, as pigpu's advice for a damaged
    // one once said. The copy beside it still knows the install, so the rerun changes nothing
    // and backs up none of pigpu's own modules as "originals".
    fs::rename(&state, t.path().join("moved.json")).unwrap();
    let mut host1 = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host1).unwrap(), Outcome::Ok);
    assert!(host1.calls.is_empty(), "{:?}", host1.calls);
    let kos: Vec<PathBuf> = walk(&inner.join("v/backup"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ko"))
        .collect();
    assert!(kos.is_empty(), "pigpu's own modules backed up: {kos:?}");

    // A damaged state file: the copy pigpu keeps beside it still knows what it installed, so a
    // rerun does not take pigpu's own modules for originals, and --undo removes everything.
    fs::write(&state, "{ not json").unwrap();
    let mut host2 = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host2).unwrap(), Outcome::Ok);
    assert!(host2.calls.is_empty(), "{:?}", host2.calls);
    let mut host3 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &["--undo"], &mut host3).unwrap(),
        Outcome::Ok
    );
    let kdir = root
        .join("lib/modules")
        .join(&rel)
        .join("kernel/drivers/video");
    assert!(!kdir.join("nvidia.ko").exists());
    assert!(!inner.join("m/pigpu-nvidia.conf").exists());
    assert_eq!(fs::read(fw.join("real-config.txt")).unwrap(), original);
    assert!(fs::symlink_metadata(fw.join("config.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(walk(&out).is_empty());
}

pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Processes named `make` whose command line mentions `needle`.
fn makes_mentioning(needle: &str) -> Vec<String> {
    processes_mentioning(needle)
        .into_iter()
        .filter(|p| {
            let argv0 = p.split(": ").nth(1).and_then(|c| c.split(' ').next());
            argv0.is_some_and(|a| a == "make" || a.ends_with("/make"))
        })
        .collect()
}

/// `/proc/PID/stat` of every live (not zombie) process: (pid, state, pgrp, command name).
fn live_processes() -> Vec<(u32, char, i32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let mut rest = stat[close + 2..].split(' ');
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let pgrp = rest.nth(1).and_then(|g| g.parse().ok()).unwrap_or(0);
        if state != 'Z' {
            out.push((pid, state, pgrp, name));
        }
    }
    out
}

fn group_members(pgid: i32) -> Vec<String> {
    live_processes()
        .into_iter()
        .filter(|p| p.2 == pgid)
        .map(|(pid, st, _, name)| format!("{pid} {st} {name}"))
        .collect()
}

/// Starts setup with a compiler that waits, waits until the build is compiling, and returns
/// pigpu and the process group its `make` runs in (checked to be a group of its own).
fn setup_stuck_in_the_build(
    root: &Path,
    manifest: &Path,
    log: &Path,
    work: &str,
) -> (std::process::Child, i32) {
    // A stale log from an earlier run would look like a build in progress.
    let _ = fs::remove_file(log);
    let a = pigpu_setup(root, manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !fs::read_to_string(log).is_ok_and(|l| l.contains("CC [M]")) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the build never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let makes = makes_mentioning(work);
    assert!(!makes.is_empty(), "no make running");
    let pids: Vec<u32> = makes
        .iter()
        .map(|m| m.split(':').next().unwrap().parse().unwrap())
        .collect();
    let groups: Vec<i32> = live_processes()
        .into_iter()
        .filter(|p| pids.contains(&p.0))
        .map(|p| p.2)
        .collect();
    let pgid = groups[0];
    assert!(groups.iter().all(|&g| g == pgid), "{makes:?}: {groups:?}");
    let ours = nix::unistd::getpgrp().as_raw();
    assert_ne!(pgid, ours, "make runs in the test's own process group");
    assert_ne!(pgid as u32, a.id(), "make runs in pigpu's process group");
    (a, pgid)
}

/// Waits up to 5 s for every process of group `pgid` to be gone.
fn assert_group_dies(pgid: i32, what: &str) {
    let t0 = Instant::now();
    while !group_members(pgid).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: the build's process group still runs 5 s later: {:?}",
            group_members(pgid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A manifest whose build compiles through a `CC` that waits (up to 60 s, printing nothing)
/// over each module source until the file `go` exists, as gcc does over one of NVIDIA's big
/// files. Returns the manifest and `go`.
fn held_compile_manifest(dir: &Path, base: &str) -> (PathBuf, PathBuf) {
    let go = dir.join("go");
    let cc = dir.join("slow-cc");
    fs::write(
        &cc,
        format!(
            "#!/bin/sh\ncase \"$*\" in *kernel-open/nvidia*.c*) n=0; while [ ! -e {} ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done ;; esac\nexec gcc \"$@\"\n",
            go.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&cc, fs::Permissions::from_mode(0o755)).unwrap();
    let m = manifest(dir, base, |x| {
        x.replace(
            "disk_mib = 20\n",
            &format!("disk_mib = 20\nmake_args = [\"CC={}\"]\n", cc.display()),
        )
    });
    (m, go)
}

#[test]
fn a_kill_during_the_build_stops_make_and_a_closed_pipe_does_not_panic() {
    use std::os::unix::process::ExitStatusExt;
    let t = TempDir::new().unwrap();
    let (root, rel) = binary_ready_root(t.path());
    let s = serve(t.path());
    // make has nothing to write to pigpu's pipe while the compile is held, so only what pigpu
    // arranges can stop it. Before the fix, make and its jobs lived on after pigpu was killed
    // (GNU make forwards a signal only to the children it has recorded).
    let (slow, go) = held_compile_manifest(t.path(), &s.base);
    let log = root.join(format!("var/log/pigpu/build-1.0.0-{rel}.log"));
    let work = root.join("var/lib/pigpu/work");
    let needle = work.display().to_string();

    // SIGKILL: no handler runs; the reaper sees pigpu's end of its pipe close.
    let (mut a, pgid) = setup_stuck_in_the_build(&root, &slow, &log, &needle);
    a.kill().unwrap();
    a.wait().unwrap();
    assert_group_dies(pgid, "SIGKILL");

    // SIGTERM (and SIGINT, the same handler): the group is killed, then pigpu dies of the
    // signal as before.
    let (a, pgid) = setup_stuck_in_the_build(&root, &slow, &log, &needle);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = a.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{:?}", out.status);
    assert_group_dies(pgid, "SIGTERM");

    // Nothing was left to go on: no module was linked.
    fs::write(&go, "").unwrap();
    assert!(processes_mentioning(&needle).is_empty());
    let linked: Vec<PathBuf> = walk(&work)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ko"))
        .collect();
    assert!(
        linked.is_empty(),
        "the build went on after the kill: {linked:?}"
    );

    // Rerun with stdout closed before it starts (`| true`) and stderr into a pipe closed after
    // 300 bytes (`2>&1 | head -c 300`): no panic, and no exit 0 half-way (which, before, came
    // at the first line of the plan with nothing done): the run goes on to the end and commits.
    let m = manifest(t.path(), &s.base, |x| x);
    let (mut reader, writer) = std::io::pipe().unwrap();
    let (out_reader, out_writer) = std::io::pipe().unwrap();
    drop(out_reader);
    let mut b = pigpu_setup(&root, &m)
        .stdout(out_writer)
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut head = [0u8; 300];
    reader.read_exact(&mut head).unwrap();
    drop(reader);
    let status = b.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    let st = state_json(&root.join("var/lib/pigpu/state.json"));
    assert_eq!(st["in_progress"].as_array().unwrap().len(), 0, "{st}");
    assert!(nvidia_ko(&root, &rel).is_file());
}

#[test]
fn refusals_before_any_build_change_nothing_and_name_the_cause() {
    let t = TempDir::new().unwrap();
    let s = Server::start();
    s.add(
        "/patches/0001-query-coherency.patch",
        fs::read(fixtures().join("patches/0001-query-coherency.patch")).unwrap(),
    );
    s.add(
        "/fake-installer.run",
        fs::read(fixtures().join("fake-installer.run")).unwrap(),
    );
    let m = manifest(t.path(), &s.base, |x| x);
    let fresh = |name: &str| {
        let d = t.path().join(name);
        fs::create_dir_all(&d).unwrap();
        gpu_root(&d, 0x2204).0
    };
    let untouched = |root: &Path| {
        assert!(!root.join("var/lib/pigpu").exists(), "{}", root.display());
    };

    // A captive portal's page in the cache (the archive has no sha256, only a tree pin): it is
    // removed, named, and fetched again (here the mirror lacks it, so the run stops).
    let root = fresh("cache");
    let file = Manifest::load(&m).unwrap().source_artifact().file;
    let cached = root.join("var/cache/pigpu").join(file);
    fs::create_dir_all(cached.parent().unwrap()).unwrap();
    fs::write(&cached, "<html>login</html>\n").unwrap();
    let mut host = RecordingHost::default();
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(
        e.contains(&format!("the cached copy {} ", cached.display())) && e.contains("removed"),
        "{e}"
    );
    assert!(!cached.exists());
    untouched(&root);

    // An archive with a FIFO in it: refused, and no work directory is left behind.
    let root = fresh("fifo");
    let stage = t.path().join("fifo-stage/fixture-modules-1.0.0");
    fs::create_dir_all(stage.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("srctree"))
        .arg(&stage)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("mkfifo")
        .arg(stage.join("kernel-open/pipe"))
        .status()
        .unwrap()
        .success());
    let tgz = t.path().join("fifo.tar.gz");
    assert!(Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(stage.parent().unwrap())
        .arg("fixture-modules-1.0.0")
        .status()
        .unwrap()
        .success());
    s.add(
        "/archive/fixture-modules-1.0.0.tar.gz",
        fs::read(&tgz).unwrap(),
    );
    let e = chain(&setup(&root, &m, &[], &mut host).unwrap_err());
    assert!(e.contains("the archive holds a FIFO"), "{e}");
    untouched(&root);

    // An immutable config.txt is found while planning, before the download and the build.
    let root = fresh("immutable");
    let config = root.join("boot/firmware/config.txt");
    let locked = Command::new("chattr")
        .arg("+i")
        .arg(&config)
        .status()
        .is_ok_and(|s| s.success());
    if !locked {
        // Not root (or no chattr on this file system): a read-only file stops a normal user.
        fs::set_permissions(&config, fs::Permissions::from_mode(0o444)).unwrap();
    }
    let seen = s.seen().len();
    let e = setup(&root, &m, &[], &mut host).unwrap_err().to_string();
    if locked {
        let _ = Command::new("chattr").arg("-i").arg(&config).status();
    }
    assert!(e.contains("config.txt cannot be written"), "{e}");
    assert_eq!(s.seen().len(), seen, "nothing downloaded");
    untouched(&root);
    assert!(!root.join("var/cache/pigpu").exists());

    // Root paths a shell would act on (Kbuild expands them inside recipes): refused at once.
    for name in ["x;touch PWNED;y", "with space"] {
        let root = fresh(name);
        let e = setup(&root, &m, &[], &mut host).unwrap_err().to_string();
        assert!(e.contains("the kernel build passes it to make"), "{e}");
        untouched(&root);
    }
    assert!(!Path::new("PWNED").exists() && !t.path().join("PWNED").exists());
    assert!(host.calls.is_empty(), "{:?}", host.calls);
}

/// Probe case 7 to the end: a captive portal's page left in the download cache no longer blocks
/// setup for good. With a good mirror the bad entry is named, removed and fetched again, and the
/// run completes with the real archive in the cache (before the fix every run reused the page).
#[test]
fn a_bad_cached_download_is_replaced_from_a_good_mirror() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let file = Manifest::load(&m).unwrap().source_artifact().file;
    let cached = root.join("var/cache/pigpu").join(file);
    fs::create_dir_all(cached.parent().unwrap()).unwrap();
    let page = b"<html>login</html>\n";
    fs::write(&cached, page).unwrap();

    let mut host = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host).unwrap(), Outcome::Ok);
    let now = fs::read(&cached).expect("the archive is cached again");
    assert_ne!(now, page.to_vec(), "the portal page is still cached");
    assert_eq!(&now[..2], b"\x1f\x8b", "the cache holds the gzip archive");
    assert!(
        nvidia_ko(&root, &rel).exists(),
        "the run built and installed"
    );
}

/// `chattr +i` on a file, undone when dropped whatever the test's end (an immutable file would
/// also stop its temporary directory from being removed).
struct Immutable(PathBuf);

impl Immutable {
    /// `None` when the user or the file system does not allow the flag.
    fn set(path: &Path) -> Option<Immutable> {
        Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Every directory, file and link under `root` (a file with its bytes, a link with its
/// target), except pigpu's download cache and logs, which a failed run keeps on purpose.
fn tree_of(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn visit(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("var/cache") || rel.starts_with("var/log") {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let to = fs::read_link(&p).unwrap();
                out.insert(rel, format!("-> {}", to.display()).into_bytes());
            } else if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                visit(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    visit(root, root, &mut out);
    out
}

/// Probe case D9, its second half: config.txt was writable while planning and becomes
/// immutable while the build runs, so the boot-config step, the last, fails after the modules
/// and modprobe files are in place. The rollback must take them all away, keep config.txt as it
/// was, and not report a failure to restore the file it never changed. Before, it said "except:
/// restoring /boot/firmware/config.txt from …: Operation not permitted" and left the backup
/// and the work tree under var/lib/pigpu.
#[test]
fn config_txt_locked_during_the_build_fails_the_last_step_and_rolls_back_cleanly() {
    use std::os::unix::process::ExitStatusExt;
    let t = TempDir::new().unwrap();
    // Root ignores file modes, so only the immutable flag can make config.txt unwritable; it is
    // tried first on a file of the same file system.
    let probe = t.path().join("chattr-probe");
    fs::write(&probe, "").unwrap();
    if Immutable::set(&probe).is_none() {
        eprintln!(
            "SKIPPED: `chattr +i` is not permitted on {} (not root, or a file system without the \
             immutable flag), so config.txt cannot be made unwritable during the run",
            t.path().display()
        );
        return;
    }
    let (root, rel) = binary_ready_root(t.path());
    let s = serve(t.path());
    let (m, go) = held_compile_manifest(t.path(), &s.base);
    let config = root.join("boot/firmware/config.txt");
    let before = tree_of(&root);
    let original = fs::read(&config).unwrap();
    let log = root.join(format!("var/log/pigpu/build-1.0.0-{rel}.log"));
    let err_file = t.path().join("stderr");
    let mut a = pigpu_setup(&root, &m)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    let stderr = || fs::read_to_string(&err_file).unwrap();
    let t0 = Instant::now();
    while !fs::read_to_string(&log).is_ok_and(|l| l.contains("CC [M]")) {
        if let Some(st) = a.try_wait().unwrap() {
            panic!(
                "setup ended ({st}) before its build compiled:\n{}",
                stderr()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the build never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The plan found config.txt writable (the run got this far); from now on it is not.
    let _locked = Immutable::set(&config).expect("chattr +i worked on the probe file");
    fs::write(&go, "").unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = a.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = a.kill();
            panic!(
                "setup still runs 180 s after the build went on:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = stderr();
    assert_eq!(status.signal(), None, "{status}:\n{err}");
    assert_eq!(status.code(), Some(2), "{err}");
    // The build and the module install ran; boot-config, the last step, failed on config.txt.
    for step in ["build", "install-modules", "boot-config"] {
        assert!(
            err.contains(&format!("] {step}: ")),
            "no step {step}:\n{err}"
        );
    }
    assert!(
        err.contains(
            "pigpu: error: step boot-config failed; this run's changes were rolled back\n"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!("writing {}", config.display())),
        "{err}"
    );
    // No false report about the file it never changed.
    for word in ["except:", "could not", "restoring", "roll back:"] {
        assert!(!err.contains(word), "{word:?} in:\n{err}");
    }
    // Nothing left: no state, backup, work tree or lock; modules, index files and modprobe
    // files gone with the directories made for them; config.txt byte for byte as it was.
    assert!(
        !root.join("var/lib/pigpu").exists(),
        "{:?}",
        walk(&root.join("var/lib/pigpu"))
    );
    assert_eq!(fs::read(&config).unwrap(), original);
    let after = tree_of(&root);
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "left changed: {changed:?}\n{err}");
}
