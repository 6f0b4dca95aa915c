//! The system root that pigpu looks at: `/` on a live system, a temp dir in tests, a mounted OS
//! image for `setup --root`. Every file access of doctor and setup goes through a `Root`, so no
//! code path can touch the live system when it was pointed somewhere else.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The most [`Root::read_optional`] reads of one file: the system files pigpu reads are small,
/// so a bigger one is a mistake (or `/dev/zero` behind a link) and is refused, not loaded.
pub const MAX_READ: u64 = 64 << 20;

/// Opens `path` for reading, non-blocking (so a FIFO cannot hang the open), and checks on the
/// opened file that it is a regular file; an error names the path otherwise.
fn open_regular(path: &Path) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok((f, meta))
}

/// Reads a regular file of at most `cap` bytes. The type is checked on the opened file (opened
/// non-blocking, so a FIFO cannot hang the open), and the read stops at `cap` + 1 bytes whatever
/// the file claims, so a growing file cannot exceed it either.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let (f, meta) = open_regular(path)?;
    let mut out = Vec::with_capacity(meta.len().min(cap) as usize);
    f.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {} MiB", path.display(), cap >> 20),
        ));
    }
    Ok(out)
}

/// The last `keep` bytes of a regular file (all of it when smaller), and whether it was cut;
/// a FIFO, a device or a directory is an error naming the path (opened non-blocking, so a FIFO
/// cannot hang the open).
pub fn read_regular_tail(path: &Path, keep: u64) -> io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut f, meta) = open_regular(path)?;
    let cut = meta.len() > keep;
    if cut {
        f.seek(SeekFrom::Start(meta.len() - keep))?;
    }
    let mut out = Vec::with_capacity(meta.len().min(keep) as usize);
    f.take(keep).read_to_end(&mut out)?;
    Ok((out, cut))
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync of the
/// directory, so a crash leaves the old file or the new one, never half of either. The mode is
/// `mode`, else the replaced file's, else 0644. Parent directories are created.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    atomic_replace(path, mode, |tmp| std::fs::write(tmp, bytes))
}

/// Like [`atomic_write`], with the temp file filled by `fill` (a copy, for instance).
pub fn atomic_replace(
    path: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pigpu-tmp"));
    let mode = mode
        .or_else(|| {
            fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777)
        })
        .unwrap_or(0o644);
    let result = (|| {
        fill(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A directory treated as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The live system.
    pub fn live() -> Root {
        Root {
            dir: PathBuf::from("/"),
        }
    }
    /// A root at `dir` (a fake system tree in tests, a mounted image).
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }
    /// Whether this is the live system (`/`).
    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }
    /// The directory standing for `/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps an absolute system path (`/boot/firmware/config.txt`) into this root, following
    /// symlinks in its directories the way the system under this root would: an absolute link
    /// target is taken inside the root and `..` never climbs above it, so no directory on the
    /// way can lead out of the root. Components that do not exist yet are appended as they are. On the live system
    /// (or when links loop, see [`Root::inside`]) the path is only joined, `..` dropped.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        if self.is_live() {
            return self.lexical(abs);
        }
        // The directories are resolved; the last component is kept as it is, so `read_link`
        // and `symlink_metadata` on the result still see a link there ([`Root::inside`]
        // resolves it too, for reading and writing the file).
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return self.lexical(abs);
        };
        match self.walk(parent, true) {
            Ok(dir) => self.lexical(&dir.join(name)),
            Err(_) => self.lexical(abs),
        }
    }

    fn lexical(&self, abs: &Path) -> PathBuf {
        let mut out = self.dir.clone();
        for c in abs.components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    /// Like [`Root::path`], but strict: links that loop (or a component that cannot be
    /// examined) are an error instead of a lexical join, so what is returned never leaves the
    /// root through a symlink. Every path pigpu writes under a root goes through this.
    pub fn inside(&self, abs: impl AsRef<Path>) -> io::Result<PathBuf> {
        let abs = abs.as_ref();
        if self.is_live() {
            return Ok(self.lexical(abs));
        }
        let sys = self.walk(abs, true)?;
        Ok(self.lexical(&sys))
    }

    /// Whether `abs` (an absolute path as seen inside the root) exists, following symlinks.
    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    /// Follows symlinks the way the system under this root would: absolute link targets are
    /// taken inside the root (an image's `/lib/modules/<rel>/build -> /usr/src/…` must not be
    /// looked up on the host). Returns the final system path, or `None` when it does not exist
    /// or the links loop.
    pub fn resolve(&self, abs: impl AsRef<Path>) -> Option<PathBuf> {
        self.walk(abs.as_ref(), false).ok()
    }

    /// The system path `abs` leads to inside the root. `lenient`: a missing component ends the
    /// walk and the rest is appended unresolved (a file about to be created); otherwise a
    /// missing component is `NotFound`. Links that loop are an error either way.
    fn walk(&self, abs: &Path, lenient: bool) -> io::Result<PathBuf> {
        let mut pending: Vec<std::ffi::OsString> = abs
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .rev()
            .collect();
        let mut done = PathBuf::from("/");
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                done.pop();
                continue;
            }
            let candidate = done.join(&part);
            let host = self.lexical(&candidate);
            let meta = match std::fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if lenient && e.kind() == io::ErrorKind::NotFound => {
                    done = candidate;
                    while let Some(rest) = pending.pop() {
                        if rest == ".." {
                            done.pop();
                        } else {
                            done.push(rest);
                        }
                    }
                    return Ok(done);
                }
                Err(e) => return Err(e),
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links inside the root {}",
                        abs.display(),
                        self.dir.display()
                    )));
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(p.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            } else {
                done = candidate;
            }
        }
        Ok(done)
    }

    /// Like [`Root::exists`], with symlinks resolved inside the root.
    pub fn exists_resolved(&self, abs: impl AsRef<Path>) -> bool {
        self.resolve(abs).is_some()
    }

    /// Reads a file that may be missing: `Ok(None)` when it does not exist. Only regular files
    /// are read (a FIFO, a device or a directory is an error naming it), at most
    /// [`MAX_READ`] bytes of them; invalid UTF-8 is replaced (see [`Root::read_bytes`]).
    pub fn read_optional(&self, abs: impl AsRef<Path>) -> io::Result<Option<String>> {
        Ok(self
            .read_bytes(abs)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The bytes of a regular file inside the root, `Ok(None)` when it does not exist; larger
    /// than [`MAX_READ`] or not a regular file is an error naming the path.
    pub fn read_bytes(&self, abs: impl AsRef<Path>) -> io::Result<Option<Vec<u8>>> {
        let path = match self.inside(abs.as_ref()) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match read_regular(&path, MAX_READ) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last `keep` bytes of a regular file inside the root (see [`read_regular_tail`]);
    /// `Ok(None)` when it does not exist.
    pub fn read_tail(&self, abs: impl AsRef<Path>, keep: u64) -> io::Result<Option<Vec<u8>>> {
        let path = match self.inside(abs.as_ref()) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match read_regular_tail(&path, keep) {
            Ok((b, _)) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of the entries of a directory, sorted; empty when it does not exist.
    pub fn list_dir(&self, abs: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let mut names = match std::fs::read_dir(self.path(abs)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let r = Root::new("/tmp/fake");
        assert_eq!(
            r.path("/boot/firmware/config.txt"),
            PathBuf::from("/tmp/fake/boot/firmware/config.txt")
        );
        assert_eq!(
            r.path("/../../etc/passwd"),
            PathBuf::from("/tmp/fake/etc/passwd")
        );
        assert!(Root::live().is_live());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = Root::new(dir.path());
        std::fs::create_dir_all(dir.path().join("usr/src/linux-headers-6.12")).unwrap();
        std::fs::create_dir_all(dir.path().join("lib/modules/6.12")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/src/linux-headers-6.12",
            dir.path().join("lib/modules/6.12/build"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../x", dir.path().join("lib/modules/6.12/rel")).unwrap();
        assert_eq!(
            r.resolve("/lib/modules/6.12/build"),
            Some(PathBuf::from("/usr/src/linux-headers-6.12"))
        );
        assert!(r.exists_resolved("/lib/modules/6.12/build"));
        assert_eq!(r.resolve("/lib/modules/6.12/rel"), None);
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert_eq!(r.resolve("/loop"), None);
    }
}
