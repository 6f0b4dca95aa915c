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
}
