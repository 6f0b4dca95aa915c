//! `pull`: listing → quant choice → sha256 from the Hub → download into `blobs/` (resumed,
//! hashed while streaming, renamed into place only once verified) → snapshot link and
//! `refs/main`. A file is never visible under its final name before its hash matched.

use std::path::PathBuf;

use reqwest::header::HeaderMap;

use super::api::{status_error, Api};
use super::cache::{link_snapshot, repo_dir};
use super::names::{candidates, choose, label};
use super::{HubConfig, HubError, ModelRef};
use crate::sys::download::{DownloadError, Downloader};

/// What a pull got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The repo and the quant taken (what `run` and `list` call it).
    pub name: ModelRef,
    /// Path inside the repo.
    pub file: String,
    /// The snapshot path (what commands open).
    pub path: PathBuf,
    /// sha256 of the file (hex), checked against the Hub's.
    pub sha256: String,
    /// Size of the file, in bytes.
    pub size: u64,
    /// Bytes transferred now (0: it was already cached and verified).
    pub transferred: u64,
    /// This pull continued an interrupted download.
    pub resumed: bool,
    /// The commit it came from.
    pub commit: String,
    /// The other quants the repo offers.
    pub others: Vec<String>,
}

/// Downloads `name` from the Hub into the cache (see the module comment).
pub fn pull(name: &ModelRef, cfg: &HubConfig) -> Result<Pulled, HubError> {
    let api = Api::new(cfg)?;
    let listing = api.listing(&name.repo)?;
    let cands = candidates(listing.files.iter().map(|f| f.path.as_str()));
    if cands.is_empty() {
        return Err(HubError::NoGguf {
            repo: name.repo.clone(),
        });
    }
    let pick =
        choose(&cands, name.quant.as_deref()).map_err(|available| HubError::NoSuchQuant {
            repo: name.repo.clone(),
            quant: name.quant.clone().unwrap_or_default(),
            available,
        })?;
    let mut others: Vec<String> = cands
        .iter()
        .filter(|c| c.file != pick.file)
        .map(label)
        .collect();
    others.dedup();
    if let Some((_, parts)) = pick.split {
        return Err(HubError::Split {
            repo: name.repo.clone(),
            file: pick.file.clone(),
            parts,
            others: cands
                .iter()
                .filter(|c| c.split.is_none())
                .map(label)
                .collect(),
        });
    }
    let also = if others.is_empty() {
        String::new()
    } else {
        format!("; also available: {}", others.join(", "))
    };
    if name.quant.is_none() {
        log::info!(
            "{}: taking {} ({}) by default{also}; name another with {}:QUANT",
            name.repo,
            label(pick),
            pick.file,
            name.repo
        );
    } else {
        log::info!("{}: {}{also}", name.repo, pick.file);
    }

    let listed = listing.files.iter().find(|f| f.path == pick.file);
    let linked = api.linked_sha256(&name.repo, &listing.commit, &pick.file)?;
    let sha256 = match (listed.and_then(|f| f.sha256.clone()), linked) {
        (Some(l), Some(k)) if l != k => {
            return Err(HubError::ChecksumConflict {
                repo: name.repo.clone(),
                file: pick.file.clone(),
                listed: l,
                linked: k,
            })
        }
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => {
            return Err(HubError::NoChecksum {
                repo: name.repo.clone(),
                file: pick.file.clone(),
            })
        }
    };

    let blobs = repo_dir(&cfg.cache, &name.repo).join("blobs");
    let what = format!("{}/{}", name.repo, pick.file);
    let dl_err = |source| HubError::Download {
        repo: name.repo.clone(),
        file: pick.file.clone(),
        source: Box::new(source),
    };
    let dl = Downloader::new(&blobs, cfg.progress.clone())
        .map_err(dl_err)?
        .with_bearer(cfg.token.clone());
    let url = api.resolve_url(&name.repo, &listing.commit, &pick.file)?;
    let fetched = dl
        .fetch(&what, url.as_str(), &sha256, Some(&sha256))
        .map_err(|e| match e {
            DownloadError::Status { url, status } => {
                status_error(cfg, status, &HeaderMap::new(), &name.repo, &what, &url)
            }
            other => dl_err(other),
        })?;
    let path = link_snapshot(&cfg.cache, &name.repo, &listing.commit, &pick.file, &sha256)?;
    let size = std::fs::metadata(&fetched.path).map_or(0, |m| m.len());
    Ok(Pulled {
        name: ModelRef {
            repo: name.repo.clone(),
            quant: pick.quant.clone(),
        },
        file: pick.file.clone(),
        path,
        sha256,
        size,
        transferred: fetched.transferred,
        resumed: fetched.resumed,
        commit: listing.commit,
        others,
    })
}
