//! The system root that pigpu looks at: `/` on a live system, a temp dir in tests, a mounted OS
//! image for `setup --root`. Every file access of doctor and setup goes through a `Root`, so no
//! code path can touch the live system when it was pointed somewhere else.

use std::io;
use std::path::{Component, Path, PathBuf};

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
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }
    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }
    /// The directory standing for `/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps an absolute system path (`/boot/firmware/config.txt`) into this root. `..` components
    /// are dropped so a path can never climb out of the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.dir.clone();
        for c in abs.as_ref().components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    /// Follows symlinks the way the system under this root would: absolute link targets are
    /// taken inside the root (an image's `/lib/modules/<rel>/build -> /usr/src/…` must not be
    /// looked up on the host). Returns the final system path, or `None` when it does not exist
    /// or the links loop.
    pub fn resolve(&self, abs: impl AsRef<Path>) -> Option<PathBuf> {
        let mut pending: Vec<std::ffi::OsString> = abs
            .as_ref()
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_os_string()),
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
            let meta = std::fs::symlink_metadata(self.path(&candidate)).ok()?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(self.path(&candidate)).ok()?;
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
        Some(done)
    }

    /// Like [`Root::exists`], with symlinks resolved inside the root.
    pub fn exists_resolved(&self, abs: impl AsRef<Path>) -> bool {
        self.resolve(abs).is_some()
    }

    pub fn read_to_string(&self, abs: impl AsRef<Path>) -> io::Result<String> {
        std::fs::read_to_string(self.path(abs))
    }

    /// Reads a file that may be missing: `Ok(None)` when it does not exist.
    pub fn read_optional(&self, abs: impl AsRef<Path>) -> io::Result<Option<String>> {
        match std::fs::read(self.path(abs)) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
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
