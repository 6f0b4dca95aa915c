//! A kill during a rollback (probe case D16, issue 12), through the real binary on a fake root:
//! run A is killed with everything journaled and nothing committed, run B starts rolling A back
//! and is killed just after it restored `config.txt` (and removed that backup) but before the
//! state could say so. What comes next must finish the job quietly: `--undo` and a plain rerun
//! each restore the root byte for byte, with no "could not roll back" and no claim that someone
//! edited `config.txt`. The kill points are the `testing` feature's stall hook
//! (`PIGPU_TEST_STALL`, see `src/sys/stall.rs`), so they are exact, not timed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;

use super::robust::{binary_ready_root, pigpu_setup, walk};
use super::*;

/// Every file under `dir` (links as their target text) with its bytes, keyed by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let bytes = match fs::read_link(&p) {
                Ok(target) => format!("-> {}", target.display()).into_bytes(),
                Err(_) => fs::read(&p).unwrap(),
            };
            (rel, bytes)
        })
        .collect()
}

/// Starts `cmd` with the stall hook set to `point`, waits until pigpu says it stopped there, then
/// SIGKILLs it. Returns what it wrote on stderr.
fn kill_at(cmd: &mut Command, point: &str) -> String {
    let mut child: Child = cmd
        .env("PIGPU_TEST_STALL", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let want = format!("test hook: stalled at {point}");
    let mut seen = String::new();
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&want) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("pigpu ended before {point}: {:?}\n{seen}", child.wait())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "pigpu never reached {point}:\n{seen}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

fn in_progress(root: &Path) -> Vec<serde_json::Value> {
    let st: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("var/lib/pigpu/state.json")).unwrap()).unwrap();
    st["in_progress"].as_array().cloned().unwrap_or_default()
}

/// `cp -a`, so the same interrupted root can be finished in two ways.
fn copy_root(from: &Path, to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

/// What the binary left on `root` after an interrupted rollback, and what must hold then.
struct Expect<'a> {
    m: &'a Path,
    rel: &'a str,
    config: &'a [u8],
    modules: &'a BTreeMap<String, Vec<u8>>,
    etc: &'a BTreeMap<String, Vec<u8>>,
}

/// Fails (with the reason) unless `cond`.
macro_rules! check {
    ($cond:expr, $($why:tt)*) => {
        if !$cond {
            return Err(format!($($why)*));
        }
    };
}

/// Runs `pigpu setup` with `extra` on `root`: it must succeed and raise no false alarm.
fn quiet_run(root: &Path, e: &Expect, extra: &[&str]) -> Result<String, String> {
    let o = pigpu_setup(root, e.m).args(extra).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    for bad in [
        "could not roll back",
        "was edited after pigpu",
        "was changed after pigpu",
    ] {
        check!(!err.contains(bad), "setup {extra:?} said {bad:?}:\n{err}");
    }
    check!(o.status.success(), "setup {extra:?}: {}\n{err}", o.status);
    Ok(err)
}

/// The root is as it was before pigpu: byte for byte where pigpu wrote, and no state left.
fn restored(root: &Path, e: &Expect) -> Result<(), String> {
    check!(
        fs::read(root.join("boot/firmware/config.txt")).unwrap() == e.config,
        "config.txt differs from the original"
    );
    let modules = snapshot(&root.join("lib/modules").join(e.rel));
    check!(
        &modules == e.modules,
        "lib/modules/{}: {:?}",
        e.rel,
        modules.keys()
    );
    let etc = snapshot(&root.join("etc"));
    check!(&etc == e.etc, "etc: {:?}", etc.keys());
    check!(!root.join("var/lib/pigpu").exists(), "var/lib/pigpu left");
    Ok(())
}

/// `--undo` finishes the interrupted rollback.
fn undo_finishes_it(root: &Path, e: &Expect) -> Result<(), String> {
    let err = quiet_run(root, e, &["--undo"])?;
    check!(err.contains("pigpu: undone"), "{err}");
    restored(root, e)
}

/// A plain rerun rolls the rest back quietly, then provisions; its `--undo` restores all.
fn a_rerun_finishes_it(root: &Path, e: &Expect) -> Result<(), String> {
    let err = quiet_run(root, e, &[])?;
    check!(err.contains("rolling back its"), "{err}");
    check!(in_progress(root).is_empty(), "the rerun left a journal");
    quiet_run(root, e, &["--undo"])?;
    restored(root, e)
}

#[test]
fn a_kill_during_rollback_leaves_nothing_for_the_next_run_to_complain_about() {
    let t = TempDir::new().unwrap();
    let (root, rel) = binary_ready_root(t.path());
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let config = root.join("boot/firmware/config.txt");
    let original = fs::read(&config).unwrap();
    let modules = root.join("lib/modules").join(&rel);
    let modules_before = snapshot(&modules);
    let etc_before = snapshot(&root.join("etc"));

    // A: every step ran (modules built and installed, modprobe files, config.txt), then killed
    // before its commit.
    kill_at(&mut pigpu_setup(&root, &m), "commit");
    let journal = in_progress(&root);
    let last = journal.last().expect("A journaled its changes");
    assert_eq!(
        last["path"], "/boot/firmware/config.txt",
        "the newest change is config.txt: {last}"
    );
    assert!(last["backup"].is_string(), "{last}");
    assert_ne!(fs::read(&config).unwrap(), original);
    assert!(modules.join("kernel/drivers/video/nvidia.ko").is_file());
    assert!(root.join("etc/modprobe.d/pigpu-nvidia.conf").is_file());

    // B: rolls A back, and is killed right after the first reversal (config.txt restored, its
    // backup removed), before the state is saved.
    let b = kill_at(&mut pigpu_setup(&root, &m), "revert:1");
    assert!(b.contains("the previous run did not finish"), "{b}");
    assert_eq!(
        fs::read(&config).unwrap(),
        original,
        "B restored config.txt"
    );
    let backup = root.join(last["backup"].as_str().unwrap().trim_start_matches('/'));
    assert!(!backup.exists(), "B removed {}", backup.display());
    assert_eq!(in_progress(&root).len(), journal.len(), "B never saved");
    assert!(modules.join("kernel/drivers/video/nvidia.ko").is_file());

    // C: the same interrupted root finished by `--undo`, and (a copy) by a rerun.
    let again = t.path().join("again");
    copy_root(&root, &again);
    let e = Expect {
        m: &m,
        rel: &rel,
        config: &original,
        modules: &modules_before,
        etc: &etc_before,
    };
    let by_undo = undo_finishes_it(&root, &e);
    let by_rerun = a_rerun_finishes_it(&again, &e);
    assert!(
        by_undo.is_ok() && by_rerun.is_ok(),
        "--undo: {by_undo:?}\nrerun: {by_rerun:?}"
    );
}
