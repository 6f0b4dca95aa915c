//! Models by name from the Hugging Face Hub: find a repo's GGUF files through the Hub API,
//! download the chosen quant (resumed, sha256-verified against the Hub's LFS hash), and keep it
//! in the Hugging Face cache layout so other tools (huggingface_hub, llama.cpp) share the files.
//! The environment (`HF_ENDPOINT`, `HF_TOKEN`, cache dirs) is read in `cmd/` and passed down here
//! as a [`HubConfig`]; nothing in this module reads the environment.

mod api;
mod cache;
mod names;
mod pull;

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use thiserror::Error;

use crate::sys::download::DownloadError;

pub use cache::{list, matching, remove};
pub use names::ModelRef;
pub use pull::{pull, Pulled};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the Hub is and how to talk to it; built from the environment by `cmd/`.
#[derive(Clone)]
pub struct HubConfig {
    /// Base URL of the Hub (`HF_ENDPOINT`), without a trailing slash.
    pub endpoint: String,
    /// Access token (`HF_TOKEN`), sent as `Authorization: Bearer`; never printed.
    pub token: Option<String>,
    /// The hub cache directory (`HF_HUB_CACHE`, or `HF_HOME/hub`, or
    /// `~/.cache/huggingface/hub`), holding `models--ORG--NAME/`.
    pub cache: PathBuf,
    /// Hears how far a download is (the command layer draws it).
    pub progress: crate::sys::progress::Reporter,
}

impl fmt::Debug for HubConfig {
    // By hand so that the token never reaches a log line or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("cache", &self.cache)
            .field("progress", &self.progress)
            .finish()
    }
}

impl HubConfig {
    /// A config for `endpoint` (a trailing `/` is dropped) and `cache`, no token, no progress.
    pub fn new(endpoint: &str, cache: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            cache: cache.into(),
            progress: Default::default(),
        }
    }
}

/// The hub cache directory from the values of the variables `huggingface_hub` reads, in its
/// order: `HF_HUB_CACHE`, `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub`,
/// `HOME/.cache/huggingface/hub`. `var` looks a variable up (the environment, in `cmd/`).
pub fn cache_dir_from(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(d) = set("HF_HUB_CACHE") {
        return Some(d.into());
    }
    if let Some(d) = set("HF_HOME") {
        return Some(Path::new(&d).join("hub"));
    }
    if let Some(d) = set("XDG_CACHE_HOME") {
        return Some(Path::new(&d).join("huggingface/hub"));
    }
    set("HOME").map(|h| Path::new(&h).join(".cache/huggingface/hub"))
}

/// Why a Hugging Face Hub lookup, pull or cache lookup failed; each message says what to do.
#[derive(Debug, Error)]
pub enum HubError {
    /// The argument is not `ORG/NAME[:QUANT]`.
    #[error("'{name}' is not a model name: expected ORG/NAME or ORG/NAME:QUANT (optionally after hf.co/), e.g. HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_K_M")]
    BadName {
        /// The argument as given.
        name: String,
    },
    /// The request got no HTTP answer (DNS, TLS, connection, timeout).
    #[error("hub: no answer from {url}")]
    Http {
        /// The URL asked.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// 404: no such repo or file.
    #[error("hub: {what} not found at {endpoint} (404); check the name (private repos also need HF_TOKEN)")]
    NotFound {
        /// What was asked for ("repo ORG/NAME", "file …").
        what: String,
        /// The Hub endpoint (`https://huggingface.co` or `HF_ENDPOINT`).
        endpoint: String,
    },
    /// 401: the repo needs a login.
    #[error("hub: {what}: {endpoint} wants a login (401); {}", if *.token_sent { "HF_TOKEN was sent and refused: check that it is valid" } else { "set HF_TOKEN to an access token (private or gated repo)" })]
    Unauthorized {
        /// What was asked for.
        what: String,
        /// The Hub endpoint.
        endpoint: String,
        /// Whether an `HF_TOKEN` was sent (and refused).
        token_sent: bool,
    },
    /// 403: a gated repo whose terms the token's account has not accepted.
    #[error("hub: {what}: access refused (403); a gated repo needs its terms accepted at {endpoint}/{repo} with the account whose HF_TOKEN is used")]
    Forbidden {
        /// What was asked for.
        what: String,
        /// The Hub endpoint.
        endpoint: String,
        /// The repo, `ORG/NAME`.
        repo: String,
    },
    /// 429: too many requests.
    #[error("hub: {what}: rate-limited by {endpoint} (429); wait{} and run again (a token via HF_TOKEN raises the limit)", retry_after.as_ref().map(|s| format!(" {s} s")).unwrap_or_default())]
    RateLimited {
        /// What was asked for.
        what: String,
        /// The Hub endpoint.
        endpoint: String,
        /// The server's `Retry-After` value in seconds, when it sent one.
        retry_after: Option<String>,
    },
    /// Any other non-success HTTP status.
    #[error("hub: {url}: server answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status the server answered.
        status: StatusCode,
    },
    /// The answer did not parse as the listing the Hub API documents.
    #[error("hub: {url}: unexpected answer: {message}")]
    BadListing {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The repo has no `.gguf` files at all.
    #[error("hub: {repo} has no GGUF files (pigpu runs GGUF models; look for a repo named like '{repo}-GGUF')")]
    NoGguf {
        /// The repo, `ORG/NAME`.
        repo: String,
    },
    /// The repo has GGUF files, but none of the quant asked for.
    #[error("hub: {repo} has no {quant} GGUF; available: {}", available.join(", "))]
    NoSuchQuant {
        /// The repo, `ORG/NAME`.
        repo: String,
        /// The quant asked for (`Q4_K_M`).
        quant: String,
        /// The quants the repo does have.
        available: Vec<String>,
    },
    /// The quant asked for exists only as a split model (`-00001-of-0000N.gguf`).
    #[error("hub: {repo}: {file} is split into {parts} files; split GGUFs are not supported yet: pick a quant that is one file{}", if others.is_empty() { String::new() } else { format!(" ({})", others.join(", ")) })]
    Split {
        /// The repo, `ORG/NAME`.
        repo: String,
        /// The first part's path inside the repo.
        file: String,
        /// How many parts it has.
        parts: u32,
        /// Quants of the same repo that are one file.
        others: Vec<String>,
    },
    /// The file is not stored in LFS, so the Hub gives no sha256 to verify it against.
    #[error("hub: {repo}/{file}: the Hub gives no sha256 for it (not an LFS file), so it cannot be verified; refusing it")]
    NoChecksum {
        /// The repo, `ORG/NAME`.
        repo: String,
        /// Path inside the repo.
        file: String,
    },
    /// The tree listing and the file endpoint give different sha256 values.
    #[error("hub: {repo}/{file}: the listing says sha256 {listed} but the file endpoint says {linked}; refusing it")]
    ChecksumConflict {
        /// The repo, `ORG/NAME`.
        repo: String,
        /// Path inside the repo.
        file: String,
        /// The sha256 in the tree listing (hex).
        listed: String,
        /// The sha256 the file endpoint links (hex).
        linked: String,
    },
    /// Downloading or verifying the file failed.
    #[error("hub: {repo}/{file}: {source}")]
    Download {
        /// The repo, `ORG/NAME`.
        repo: String,
        /// Path inside the repo.
        file: String,
        /// What went wrong.
        #[source]
        source: Box<DownloadError>,
    },
    /// Reading or writing the model cache failed.
    #[error("hub cache: {}: {source}", path.display())]
    Io {
        /// The cache path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model name was given to a command that does not download, and it is not cached.
    #[error("{name} is not in the model cache ({}); run `pigpu pull {name}` first (`pigpu list` shows what is there)", cache.display())]
    NotCached {
        /// The model name as given.
        name: String,
        /// The model cache directory.
        cache: PathBuf,
    },
}

/// `io::Error` → [`HubError::Io`] for `path`.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a command-line model argument means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A file path (existing, or not a model name: the caller reports it missing).
    Path(PathBuf),
    /// A model name found in the cache: the snapshot path of its file.
    Cached {
        /// The name, with the quant the cached file has.
        name: ModelRef,
        /// The snapshot path of the file.
        path: PathBuf,
    },
    /// A model name that is not in the cache.
    Missing(ModelRef),
}

/// Resolves what a command takes as its model: an existing file is itself; `ORG/NAME[:QUANT]`
/// is looked up in the cache (and its last use recorded); anything else is left as a path.
/// Does no network access.
pub fn resolve(arg: &Path, cfg: &HubConfig) -> Resolved {
    let text = arg.to_string_lossy();
    if arg.exists() || !ModelRef::looks_like_name(&text) {
        return Resolved::Path(arg.to_path_buf());
    }
    let Ok(name) = ModelRef::parse(&text) else {
        return Resolved::Path(arg.to_path_buf());
    };
    match cache::find(&cfg.cache, &name) {
        Some(m) => {
            cache::touch(&m);
            Resolved::Cached { name, path: m.path }
        }
        None => Resolved::Missing(name),
    }
}

/// [`resolve`], with a name that is not cached as an error telling to `pigpu pull` it.
pub fn resolve_cached(arg: &Path, cfg: &HubConfig) -> Result<PathBuf, HubError> {
    match resolve(arg, cfg) {
        Resolved::Path(p) | Resolved::Cached { path: p, .. } => Ok(p),
        Resolved::Missing(name) => Err(HubError::NotCached {
            name: name.to_string(),
            cache: cfg.cache.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_follows_huggingface_hub_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all: &[(&str, &str)] = &[
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache_dir_from(env(all)), Some("/c".into()));
        assert_eq!(cache_dir_from(env(&all[1..])), Some("/h/hub".into()));
        assert_eq!(
            cache_dir_from(env(&all[2..])),
            Some("/x/huggingface/hub".into())
        );
        assert_eq!(
            cache_dir_from(env(&all[3..])),
            Some("/home/u/.cache/huggingface/hub".into())
        );
        assert_eq!(
            cache_dir_from(env(&[("HF_HUB_CACHE", ""), ("HOME", "/r")])),
            Some("/r/.cache/huggingface/hub".into())
        );
        assert_eq!(cache_dir_from(env(&[])), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = HubConfig::new("http://127.0.0.1:1/", "/tmp/x");
        c.token = Some("hf_secret123".into());
        let d = format!("{c:?}");
        assert!(!d.contains("hf_secret123"), "{d}");
        assert!(d.contains("<set>"));
        assert_eq!(c.endpoint, "http://127.0.0.1:1");
    }

    #[test]
    fn paths_stay_paths_and_missing_names_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let cfg = HubConfig::new("http://127.0.0.1:1", t.path());
        let f = t.path().join("m.gguf");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(resolve(&f, &cfg), Resolved::Path(f.clone()));
        let missing = Path::new("dir/absent.gguf");
        assert_eq!(resolve(missing, &cfg), Resolved::Path(missing.into()));
        let e = resolve_cached(Path::new("org/absent-GGUF:Q4_K_M"), &cfg).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("pigpu pull org/absent-GGUF:Q4_K_M"), "{msg}");
    }
}
