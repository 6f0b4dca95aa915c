//! The Hugging Face cache layout, shared with huggingface_hub and llama.cpp:
//! `models--ORG--NAME/blobs/SHA256` (the bytes, named by their LFS hash),
//! `snapshots/COMMIT/FILE` (relative symlinks to the blobs) and `refs/main` (the commit).
//! Listing, lookup by name, recording a use, and removal that keeps blobs another snapshot
//! still links to and never touches files pigpu did not list.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::names::{candidates, choose, is_model_file, quant_of};
use super::{io_err, HubError, ModelRef};

/// One GGUF file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// `ORG/NAME`.
    pub repo: String,
    /// Path inside the repo.
    pub file: String,
    pub quant: Option<String>,
    /// The snapshot (commit) it is in.
    pub revision: String,
    /// The revision is the one `refs/main` names.
    pub current: bool,
    /// Its path under `snapshots/` (what commands open).
    pub path: PathBuf,
    /// What the path resolves to (the blob).
    pub blob: PathBuf,
    pub size: u64,
    /// The blob's access time: set by pigpu whenever a command opens the model by name.
    pub last_used: Option<SystemTime>,
}

impl CachedModel {
    /// The name that selects this file: `ORG/NAME:QUANT` (or `ORG/NAME` without a quant tag).
    pub fn name(&self) -> String {
        match &self.quant {
            Some(q) => format!("{}:{q}", self.repo),
            None => self.repo.clone(),
        }
    }
}

/// `models--ORG--NAME` → `ORG/NAME`.
fn repo_of_dir(dir: &str) -> Option<String> {
    let rest = dir.strip_prefix("models--")?;
    let (org, name) = rest.split_once("--")?;
    Some(format!("{org}/{}", name.replace("--", "/")))
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file (or link) below `dir`, as paths relative to it.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for p in read_dir_sorted(dir) {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

fn read_ref(repo_dir: &Path) -> Option<String> {
    let s = fs::read_to_string(repo_dir.join("refs/main")).ok()?;
    Some(s.trim().to_string())
}

/// The GGUF files of one repo directory.
fn list_repo(repo_dir: &Path, repo: &str, out: &mut Vec<CachedModel>) {
    let main = read_ref(repo_dir);
    for snap in read_dir_sorted(&repo_dir.join("snapshots")) {
        let Some(revision) = snap
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let mut files = Vec::new();
        walk(&snap, "", &mut files);
        for file in files.into_iter().filter(|f| is_model_file(f)) {
            let path = snap.join(&file);
            // A link whose blob is gone (a removal by another tool) is not a model.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            out.push(CachedModel {
                repo: repo.to_string(),
                quant: quant_of(&file),
                current: main.as_deref() == Some(revision.as_str()),
                blob: fs::canonicalize(&path).unwrap_or_else(|_| path.clone()),
                size: meta.len(),
                last_used: meta.accessed().ok(),
                revision: revision.clone(),
                file,
                path,
            });
        }
    }
}

/// Every GGUF model file in the cache (an absent cache is empty), sorted by name.
pub fn list(cache: &Path) -> Vec<CachedModel> {
    let mut out = Vec::new();
    for dir in read_dir_sorted(cache) {
        let Some(repo) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(repo_of_dir)
        else {
            continue;
        };
        list_repo(&dir, &repo, &mut out);
    }
    out
}

/// The cached files `name` selects: its repo's (case-insensitive, as the Hub's names are),
/// only those of its quant when one is given.
pub fn matching(cache: &Path, name: &ModelRef) -> Vec<CachedModel> {
    list(cache)
        .into_iter()
        .filter(|m| m.repo.eq_ignore_ascii_case(&name.repo))
        .filter(|m| match &name.quant {
            Some(q) => m.quant.as_deref() == Some(q.as_str()) || m.file.eq_ignore_ascii_case(q),
            None => true,
        })
        .collect()
}

/// The file a name opens: in the current revision if there, the quant asked for or the
/// default choice among those cached; the first part of a split file.
pub fn find(cache: &Path, name: &ModelRef) -> Option<CachedModel> {
    let all = matching(cache, name);
    for current_only in [true, false] {
        let pool: Vec<&CachedModel> = all.iter().filter(|m| m.current || !current_only).collect();
        let cands = candidates(pool.iter().map(|m| m.file.as_str()));
        if let Ok(c) = choose(&cands, name.quant.as_deref()) {
            return pool.into_iter().find(|m| m.file == c.file).cloned();
        }
    }
    None
}

/// Records a use: sets the blob's access time to now (mount options like `relatime` would
/// otherwise leave it stale). Failing to record it is not worth failing the command for.
pub fn touch(m: &CachedModel) {
    let r = fs::File::open(&m.blob)
        .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(SystemTime::now())));
    if let Err(e) = r {
        log::debug!("could not record the use of {}: {e}", m.blob.display());
    }
}

/// `models--ORG--NAME` under the cache.
pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Writes `path` through a temporary file and a rename, so readers never see half of it.
fn write_atomic(path: &Path, text: &str) -> Result<(), HubError> {
    let tmp = path.with_extension("pigpu-tmp");
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Makes `snapshots/COMMIT/FILE` a relative link to `blobs/SHA` and points `refs/main` at
/// `commit`. The link appears (by rename) only once it is complete.
pub fn link_snapshot(
    cache: &Path,
    repo: &str,
    commit: &str,
    file: &str,
    sha256: &str,
) -> Result<PathBuf, HubError> {
    let dir = repo_dir(cache, repo);
    let link = dir.join("snapshots").join(commit).join(file);
    let parent = link.parent().unwrap_or(&dir).to_path_buf();
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    // From snapshots/COMMIT/[SUB/]FILE back up to the repo dir: one `..` per level.
    let depth = file.matches('/').count() + 2;
    let target = PathBuf::from("../".repeat(depth))
        .join("blobs")
        .join(sha256);
    let tmp = parent.join(format!(
        ".{}.pigpu-link",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("f")
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &link).map_err(io_err(&link))?;
    let refs = dir.join("refs");
    fs::create_dir_all(&refs).map_err(io_err(&refs))?;
    write_atomic(&refs.join("main"), commit)?;
    Ok(link)
}

/// What a removal deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Snapshot entries removed.
    pub links: Vec<PathBuf>,
    /// Blobs deleted (no other snapshot links to them).
    pub blobs: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes: u64,
    /// The repo had nothing else left, so its whole directory went.
    pub repo_dir_removed: bool,
}

fn remove_empty_dirs(dir: &Path) {
    for p in read_dir_sorted(dir) {
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            remove_empty_dirs(&p);
            let _ = fs::remove_dir(&p);
        }
    }
}

/// Removes `models` (entries from [`list`]/[`matching`]): their snapshot links, then each blob
/// no other snapshot of the repo still links to (and its unfinished download), then empty
/// directories, and the repo directory once nothing is left in it but refs.
pub fn remove(cache: &Path, models: &[CachedModel]) -> Result<Removed, HubError> {
    let mut done = Removed::default();
    let mut repos: Vec<&str> = models.iter().map(|m| m.repo.as_str()).collect();
    repos.sort_unstable();
    repos.dedup();
    for m in models {
        let link_is_file = fs::symlink_metadata(&m.path).is_ok_and(|md| md.is_file());
        fs::remove_file(&m.path).map_err(io_err(&m.path))?;
        if link_is_file {
            // A real file in the snapshot (a tool that does not use links): its bytes are gone.
            done.bytes += m.size;
        }
        done.links.push(m.path.clone());
    }
    for repo in repos {
        let dir = repo_dir(cache, repo);
        let snaps = dir.join("snapshots");
        let mut still: Vec<PathBuf> = Vec::new();
        let mut rest = Vec::new();
        walk(&snaps, "", &mut rest);
        for f in &rest {
            if let Ok(p) = fs::canonicalize(snaps.join(f)) {
                still.push(p);
            }
        }
        for m in models.iter().filter(|m| m.repo == repo) {
            let in_blobs = m.blob.parent().is_some_and(|p| p.ends_with("blobs"));
            if !in_blobs || still.contains(&m.blob) || done.blobs.contains(&m.blob) {
                continue;
            }
            if fs::remove_file(&m.blob).is_ok() {
                done.bytes += m.size;
                done.blobs.push(m.blob.clone());
            }
            let _ = fs::remove_file(m.blob.with_extension("part"));
        }
        remove_empty_dirs(&snaps);
        let blobs_left = fs::read_dir(dir.join("blobs")).map_or(0, |rd| rd.count());
        if rest.is_empty() && blobs_left == 0 {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            done.repo_dir_removed = true;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "1111111111111111111111111111111111111111";
    const C2: &str = "2222222222222222222222222222222222222222";

    fn blob(cache: &Path, repo: &str, sha: &str, bytes: &[u8]) {
        let b = repo_dir(cache, repo).join("blobs");
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join(sha), bytes).unwrap();
    }

    #[test]
    fn layout_list_find_and_remove() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        let repo = "org/m-GGUF";
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        blob(c, repo, &a, b"four");
        blob(c, repo, &b, b"eight!!!");
        // An old revision and the current one share blob a; b only in the current one.
        link_snapshot(c, repo, C1, "m-Q4_K_M.gguf", &a).unwrap();
        link_snapshot(c, repo, C2, "m-Q4_K_M.gguf", &a).unwrap();
        let l = link_snapshot(c, repo, C2, "sub/m-Q8_0.gguf", &b).unwrap();
        assert_eq!(
            fs::read_link(&l).unwrap(),
            PathBuf::from(format!("../../../blobs/{b}"))
        );
        assert_eq!(fs::read(&l).unwrap(), b"eight!!!");
        assert_eq!(read_ref(&repo_dir(c, repo)).as_deref(), Some(C2));

        let all = list(c);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[1].name(), "org/m-GGUF:Q4_K_M");
        assert!(all[1].current && !all[0].current);
        assert_eq!(all[2].size, 8);

        let name = |s| ModelRef::parse(s).unwrap();
        let found = find(c, &name("org/m-GGUF")).unwrap();
        assert_eq!(
            (found.revision.as_str(), found.file.as_str()),
            (C2, "m-Q4_K_M.gguf")
        );
        assert_eq!(
            find(c, &name("ORG/M-gguf:q8_0")).unwrap().file,
            "sub/m-Q8_0.gguf"
        );
        assert_eq!(find(c, &name("org/m-GGUF:Q6_K")), None);
        assert_eq!(find(c, &name("org/other")), None);

        // Removing the Q4_K_M of both revisions deletes blob a once; b stays.
        let q4 = matching(c, &name("org/m-GGUF:Q4_K_M"));
        assert_eq!(q4.len(), 2);
        let r = remove(c, &q4).unwrap();
        assert_eq!(r.links.len(), 2);
        assert_eq!(r.blobs.len(), 1);
        assert_eq!(r.bytes, 4);
        assert!(!r.repo_dir_removed);
        assert!(!repo_dir(c, repo).join("blobs").join(&a).exists());
        assert!(!repo_dir(c, repo).join("snapshots").join(C1).exists());
        assert_eq!(list(c).len(), 1);

        // The last file: the whole repo directory goes.
        let r = remove(c, &matching(c, &name("org/m-GGUF"))).unwrap();
        assert!(r.repo_dir_removed);
        assert!(!repo_dir(c, repo).exists());
        assert!(list(c).is_empty());
    }

    #[test]
    fn a_blob_linked_from_elsewhere_and_other_files_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        let repo = "org/m";
        let a = "a".repeat(64);
        blob(c, repo, &a, b"four");
        link_snapshot(c, repo, C1, "m-Q4_0.gguf", &a).unwrap();
        // Another tool's file under another name, same bytes, plus a non-GGUF file.
        link_snapshot(c, repo, C1, "copy.bin", &a).unwrap();
        let r = remove(c, &matching(c, &ModelRef::parse("org/m").unwrap())).unwrap();
        assert!(r.blobs.is_empty() && !r.repo_dir_removed, "{r:?}");
        assert!(repo_dir(c, repo).join("blobs").join(&a).exists());
        assert!(repo_dir(c, repo)
            .join("snapshots")
            .join(C1)
            .join("copy.bin")
            .exists());
        assert_eq!(repo_of_dir("models--a--b--c").as_deref(), Some("a/b/c"));
        assert_eq!(repo_of_dir("datasets--a--b"), None);
    }
}
