//! The kernel-module build as commands: the unpacked source tree checked and normalised, patches
//! applied, the kernel's source and output trees found the way its packaging lays them out, the
//! `make` command line (no shell, every path checked), the first real error of a failed build,
//! and the `.ko` files `modules_install` left.

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::probe;
use crate::sys::command::{Cmd, CommandError, ProgramPath};
use crate::sys::Root;

/// Why the kernel trees for a module build could not be found or used.
#[derive(Debug, Error)]
pub enum KbuildError {
    /// A command (`make`, the kernel's scripts) failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The trees are missing or do not fit the release, in words.
    #[error("{0}")]
    Refused(String),
}

fn refused(msg: impl Into<String>) -> KbuildError {
    KbuildError::Refused(msg.into())
}

/// The first line of a compiler or Kbuild log that is a real error (not make's summary lines),
/// with the source line and caret gcc prints after it.
pub fn first_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let is_err = |l: &str| {
        l.contains(": error: ")
            || l.contains(": fatal error: ")
            || l.starts_with("ERROR: modpost:")
            || l.contains(": undefined reference to ")
    };
    let i = lines.iter().position(|l| is_err(l))?;
    let mut out = vec![lines[i].trim_end().to_string()];
    for l in lines.iter().skip(i + 1).take(2) {
        let t = l.trim_start();
        if t.starts_with(|c: char| c.is_ascii_digit()) || t.starts_with('|') {
            out.push(l.trim_end().to_string());
        } else {
            break;
        }
    }
    Some(out.join("\n"))
}

/// `patch -p1` of `file` onto `tree`, as the prepare step applies every patch.
pub fn apply_patch(
    programs: &ProgramPath,
    tree: &Path,
    file: &Path,
    log: &Path,
) -> Result<(), KbuildError> {
    let patch = programs
        .find("patch")
        .ok_or_else(|| refused("`patch` is not installed (apt-get install patch)"))?;
    Ok(Cmd::new(&patch)
        .args(["-p1", "--batch", "--no-backup-if-mismatch", "-d"])
        .arg(tree)
        .arg("-i")
        .arg(file)
        .run_logged(log, &mut |_| {})?)
}

/// The kernel trees a module build is pointed at, as host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTrees {
    /// The kernel release the trees are for (`uname -r` form).
    pub release: String,
    /// Where the kernel's Makefile and `include/` are (`/lib/modules/<rel>/source` with split
    /// headers; the build tree otherwise).
    pub source: PathBuf,
    /// The configured output tree (`/lib/modules/<rel>/build`: `.config`, generated headers).
    pub output: PathBuf,
}

/// Finds the source and output trees of `release` inside `root`, as the kernel's packaging lays
/// them out (see [`probe::Kernel::source_tree`]).
pub fn kernel_trees(root: &Root, release: &str) -> Result<KernelTrees, KbuildError> {
    let k = probe::kernel_facts(root, release);
    match (k.build_tree, k.source_tree) {
        (Some(output), Some(source)) => Ok(KernelTrees {
            release: release.to_string(),
            source,
            output,
        }),
        _ => Err(refused(format!(
            "no kernel build tree at /lib/modules/{release}/build (install linux-headers-{release})"
        ))),
    }
}

/// `NAME=value` for make's command line. make splits its variables on white space and expands
/// `$`, and NVIDIA's Makefile passes these on to shell commands, so only plain path and release
/// characters are let through; anything else is refused with the value named.
pub fn make_var(name: &str, value: &str) -> Result<String, KbuildError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-@,~".contains(&b));
    if !ok {
        return Err(refused(format!(
            "{name}={value:?}: make cannot be given this path safely; expected only letters, digits and / . _ + - @ , ~ (move the tree or the root to a plain path)"
        )));
    }
    Ok(format!("{name}={value}"))
}

/// The build step's command: NVIDIA's Makefile in `dir` with the kernel's source tree in
/// `SYSSRC`, its output tree in `SYSOUT` and the release in `KERNEL_UNAME` (NVIDIA's Makefile
/// derives the same pair from `KERNEL_UNAME` alone on a live system; passing both keeps a
/// `--root` build inside the root). Every word is its own argv entry: no shell is involved.
pub fn make_command(
    dir: &Path,
    target: &str,
    jobs: usize,
    trees: &KernelTrees,
    manifest_args: &[String],
    extra: &[String],
) -> Result<Cmd, KbuildError> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    Ok(Cmd::new("make")
        .arg("-C")
        .arg(dir)
        .arg(target)
        .arg(format!("-j{}", jobs.max(1)))
        .arg(make_var("SYSSRC", &path(&trees.source))?)
        .arg(make_var("SYSOUT", &path(&trees.output))?)
        .arg(make_var("KERNEL_UNAME", &trees.release)?)
        // Plain ASCII compiler messages: the first error is quoted back to the user. (Kbuild
        // unexports LC_ALL, so the individual variables are set.)
        .env("LANG", "C")
        .env("LC_CTYPE", "C")
        .env("LC_MESSAGES", "C")
        .args(manifest_args)
        .args(extra))
}

/// Checks an unpacked source tree before anything else reads it: only directories, regular
/// files and symlinks (a device node, FIFO or socket is refused, naming it); `.git` directories
/// are removed (git ignores them in the tree id, so they are not pinned); modes become 0755 for
/// directories and executables, 0644 for other files: no setuid, setgid, sticky or
/// world-writable bits reach `/usr/src`, which DKMS builds from as root.
pub fn sanitize_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_symlink() {
            continue;
        }
        if ft.is_dir() {
            if e.file_name() == ".git" {
                fs::remove_dir_all(&path)?;
                continue;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
            sanitize_tree(&path)?;
        } else if ft.is_file() {
            let mode = fs::symlink_metadata(&path)?.permissions().mode();
            let want = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
            fs::set_permissions(&path, fs::Permissions::from_mode(want))?;
        } else {
            let kind = if ft.is_block_device() || ft.is_char_device() {
                "a device node"
            } else if ft.is_fifo() {
                "a FIFO"
            } else {
                "a socket"
            };
            let _ = fs::remove_file(&path);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the archive holds {kind}, {}: a source tree never does; refused",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn single_top_dir(dir: &Path) -> PathBuf {
    let entries: Vec<_> = fs::read_dir(dir)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    if entries.len() == 1 && entries[0].file_type().is_ok_and(|t| t.is_dir()) {
        entries[0].path()
    } else {
        dir.to_path_buf()
    }
}

pub(super) fn collect_modules(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_modules(&p, out);
        } else if ft.is_file() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".ko")
                || n.ends_with(".ko.xz")
                || n.ends_with(".ko.zst")
                || n.ends_with(".ko.gz")
            {
                out.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_skips_make_noise() {
        let log = "make[1]: Entering directory '/usr/src/linux-headers-6.1.0-56-amd64'\n  CC [M]  /w/kernel-open/nvidia/nv.o\n/w/kernel-open/nvidia/nv.c:12:13: error: expected expression before ';' token\n   12 |     int x = ;\n      |             ^\nmake[3]: *** [scripts/Makefile.build:250: /w/nv.o] Error 1\nmake: *** [Makefile:8: modules] Error 2\n";
        let e = first_error(log).unwrap();
        assert!(
            e.starts_with("/w/kernel-open/nvidia/nv.c:12:13: error: expected expression"),
            "{e}"
        );
        assert!(e.contains("int x = ;"));
        assert!(!e.contains("make"));
        assert_eq!(first_error("make: *** [x] Error 2\n"), None);
        assert!(
            first_error("ERROR: modpost: \"foo\" [nvidia.ko] undefined!\n")
                .unwrap()
                .contains("modpost")
        );
    }
}
