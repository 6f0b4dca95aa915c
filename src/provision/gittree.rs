//! Git tree ids of unpacked directories: how a source tarball is checked against a pinned commit
//! when the tarball's own bytes are not stable (GitHub regenerates archive gzip streams). The id
//! is computed here exactly as `git add --all --force && git write-tree` would, with file modes
//! kept, so no git binary is needed on the Pi.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha1::{Digest, Sha1};

/// The 40-hex-digit git tree id of `dir` (a `.git` entry at any level is ignored, as git does;
/// empty directories contribute nothing, as in git).
pub fn tree_id(dir: &Path) -> io::Result<String> {
    let id = hash_dir(dir)?.unwrap_or_else(|| object_id("tree", &[]));
    Ok(hex(&id))
}

fn object_id(kind: &str, body: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(format!("{kind} {}\0", body.len()).as_bytes());
    h.update(body);
    h.finalize().into()
}

fn blob_of_file(path: &Path, len: u64) -> io::Result<[u8; 20]> {
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        h.update(&buf[..n]);
    }
    if seen != len {
        return Err(io::Error::other(format!(
            "{} changed size while hashing ({len} → {seen} bytes)",
            path.display()
        )));
    }
    Ok(h.finalize().into())
}

/// (sort key, mode, name, object id) of one tree entry.
type Entry = (Vec<u8>, &'static str, Vec<u8>, [u8; 20]);

/// `None` for a directory with nothing git would record.
fn hash_dir(dir: &Path) -> io::Result<Option<[u8; 20]>> {
    // Git sorts directories as if their name ended in '/'.
    let mut entries: Vec<Entry> = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().as_bytes().to_vec();
        if name == b".git" {
            continue;
        }
        let path = e.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            let id = object_id("blob", target.as_os_str().as_bytes());
            entries.push((name.clone(), "120000", name, id));
        } else if ft.is_dir() {
            if let Some(id) = hash_dir(&path)? {
                let mut key = name.clone();
                key.push(b'/');
                entries.push((key, "40000", name, id));
            }
        } else if ft.is_file() {
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                "100755"
            } else {
                "100644"
            };
            let id = blob_of_file(&path, meta.len())?;
            entries.push((name.clone(), mode, name, id));
        }
        // Sockets, fifos and devices cannot be in a git tree; a source archive has none.
    }
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut body = Vec::new();
    for (_, mode, name, id) in &entries {
        body.extend_from_slice(mode.as_bytes());
        body.push(b' ');
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(id);
    }
    Ok(Some(object_id("tree", &body)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        assert!(out.status.success(), "git {args:?}: {out:?}");
        Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    #[test]
    fn matches_git_write_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("kernel-open/nvidia")).unwrap();
        fs::create_dir_all(d.join("empty/deeper")).unwrap();
        fs::write(d.join("Makefile"), "modules:\n\t$(MAKE) -C kernel-open\n").unwrap();
        fs::write(d.join("kernel-open/nvidia/nv.c"), "int x;\n").unwrap();
        fs::write(d.join("kernel-open.txt"), "sorts before the dir\n").unwrap();
        fs::write(d.join("kernel-open-a"), "").unwrap();
        fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("kernel-open/nvidia/nv.c", d.join("link")).unwrap();
        let ours = tree_id(d).unwrap();
        let Some(_) = git(d, &["init", "-q"]) else {
            eprintln!("skipping: git not installed");
            return;
        };
        git(d, &["add", "--all", "--force"]);
        let theirs = git(d, &["write-tree"]).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn empty_tree_is_gits_empty_tree() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            tree_id(t.path()).unwrap(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }
}
