//! The two Hub endpoints pull needs: the repo listing (`/api/models/{repo}/revision/main?blobs=true`:
//! the commit and every file with its size and LFS sha256) and the file endpoint
//! (`/{repo}/resolve/{commit}/{file}`), asked with HEAD and no redirect for the `X-Linked-Etag`
//! (the LFS sha256) before the download. HTTP status codes become [`HubError`]s that say what
//! to do; the token goes only in the `Authorization` header.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, ETAG, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::{HubConfig, HubError};
use crate::sys::download::{allowed_redirects, url_allowed};

/// A file of the repo at the listed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: Option<u64>,
    /// The LFS sha256 (lower-case hex), when the file is in LFS.
    pub sha256: Option<String>,
}

/// The repo at its current `main` commit.
#[derive(Debug, Clone)]
pub struct Listing {
    pub commit: String,
    pub files: Vec<RepoFile>,
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    // `sha256` in the model info; the tree endpoint calls it `oid`.
    sha256: Option<String>,
    oid: Option<String>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A path from the server that is safe to create under a snapshot directory: relative, no
/// `.`/`..` or empty segments (a hostile listing must not write outside the cache).
fn safe_repo_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// A commit id usable as a directory name.
fn safe_commit(c: &str) -> bool {
    (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A blocking client for the Hub: redirects followed only to https (or loopback http).
pub struct Api<'a> {
    cfg: &'a HubConfig,
    client: Client,
    /// For HEAD on the file endpoint: its headers matter, not where it redirects.
    no_redirect: Client,
}

fn build(policy: reqwest::redirect::Policy) -> Result<Client, HubError> {
    Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("pigpu/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .build()
        .map_err(|source| HubError::Http {
            url: String::new(),
            source,
        })
}

impl<'a> Api<'a> {
    pub fn new(cfg: &'a HubConfig) -> Result<Api<'a>, HubError> {
        Ok(Api {
            cfg,
            client: build(allowed_redirects())?,
            no_redirect: build(reqwest::redirect::Policy::none())?,
        })
    }

    /// `{endpoint}/{segments...}` with each segment percent-encoded.
    pub fn url<'s>(&self, segments: impl IntoIterator<Item = &'s str>) -> Result<Url, HubError> {
        let bad = |message: String| HubError::BadListing {
            url: self.cfg.endpoint.clone(),
            message,
        };
        let mut url = Url::parse(&self.cfg.endpoint)
            .map_err(|e| bad(format!("HF_ENDPOINT is not a URL: {e}")))?;
        if !url_allowed(&url) {
            return Err(bad(
                "HF_ENDPOINT must be https:// (plain http only to 127.0.0.1/::1/localhost)".into(),
            ));
        }
        url.path_segments_mut()
            .map_err(|_| bad("HF_ENDPOINT cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn authed(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.cfg.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn send(&self, req: RequestBuilder, url: &Url) -> Result<Response, HubError> {
        self.authed(req).send().map_err(|source| HubError::Http {
            url: url.to_string(),
            source,
        })
    }

    /// The repo's files at `main`, with sizes and LFS hashes.
    pub fn listing(&self, repo: &str) -> Result<Listing, HubError> {
        let (org, name) = repo.split_once('/').unwrap_or((repo, ""));
        let mut url = self.url(["api", "models", org, name, "revision", "main"])?;
        url.set_query(Some("blobs=true"));
        let resp = self.send(self.client.get(url.clone()), &url)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(status, resp.headers(), repo, repo, &url));
        }
        let bad = |message: String| HubError::BadListing {
            url: url.to_string(),
            message,
        };
        // A listing is small; a huge answer is not the Hub.
        let body = resp.bytes().map_err(|source| HubError::Http {
            url: url.to_string(),
            source,
        })?;
        if body.len() > 32 << 20 {
            return Err(bad(format!("{} bytes of listing", body.len())));
        }
        let info: ModelInfo = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("not the Hub's model info JSON: {e}")))?;
        let commit = info
            .sha
            .filter(|c| safe_commit(c))
            .ok_or_else(|| bad("no usable commit id ('sha')".into()))?;
        let mut files = Vec::new();
        for s in info.siblings {
            if !safe_repo_path(&s.rfilename) {
                return Err(bad(format!("unsafe file name {:?}", s.rfilename)));
            }
            let sha256 = s
                .lfs
                .and_then(|l| l.sha256.or(l.oid))
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| is_sha256(h));
            files.push(RepoFile {
                path: s.rfilename,
                size: s.size,
                sha256,
            });
        }
        Ok(Listing { commit, files })
    }

    /// The file endpoint's URL for `file` at `commit`.
    pub fn resolve_url(&self, repo: &str, commit: &str, file: &str) -> Result<Url, HubError> {
        let (org, name) = repo.split_once('/').unwrap_or((repo, ""));
        self.url(
            [org, name, "resolve", commit]
                .into_iter()
                .chain(file.split('/')),
        )
    }

    /// HEAD on the file endpoint without following its redirect: the LFS sha256 from
    /// `X-Linked-Etag` (or `ETag`) when it is one, and a clear error when access is refused.
    pub fn linked_sha256(
        &self,
        repo: &str,
        commit: &str,
        file: &str,
    ) -> Result<Option<String>, HubError> {
        let url = self.resolve_url(repo, commit, file)?;
        let resp = self.send(self.no_redirect.head(url.clone()), &url)?;
        let status = resp.status();
        if !(status.is_success() || status.is_redirection()) {
            let what = format!("{repo}/{file}");
            return Err(self.status_error(status, resp.headers(), repo, &what, &url));
        }
        let h = resp.headers();
        let etag = h
            .get("x-linked-etag")
            .or_else(|| h.get(ETAG))
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            });
        Ok(etag.filter(|e| is_sha256(e)))
    }

    /// A failed answer as an error that says what to do.
    pub fn status_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        repo: &str,
        what: &str,
        url: &Url,
    ) -> HubError {
        status_error(self.cfg, status, headers, repo, what, url.as_str())
    }
}

/// See [`Api::status_error`]; also used for the download's own answers.
pub fn status_error(
    cfg: &HubConfig,
    status: StatusCode,
    headers: &HeaderMap,
    repo: &str,
    what: &str,
    url: &str,
) -> HubError {
    let what = what.to_string();
    let endpoint = cfg.endpoint.clone();
    match status {
        StatusCode::NOT_FOUND => HubError::NotFound { what, endpoint },
        StatusCode::UNAUTHORIZED => HubError::Unauthorized {
            what,
            endpoint,
            token_sent: cfg.token.is_some(),
        },
        StatusCode::FORBIDDEN => HubError::Forbidden {
            what,
            endpoint,
            repo: repo.to_string(),
        },
        StatusCode::TOO_MANY_REQUESTS => HubError::RateLimited {
            what,
            endpoint,
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() < 40 && v.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string),
        },
        status => HubError::Status {
            url: url.to_string(),
            status,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        assert!(safe_repo_path("m-Q4_K_M.gguf"));
        assert!(safe_repo_path("Q6_K/m-Q6_K.gguf"));
        for bad in [
            "",
            "../x.gguf",
            "a/../../x",
            "/etc/x",
            "a//b",
            "a\\b",
            "./x",
        ] {
            assert!(!safe_repo_path(bad), "{bad:?}");
        }
        assert!(safe_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!safe_commit("../../x"));
    }

    #[test]
    fn urls_are_encoded_under_the_endpoint() {
        let cfg = HubConfig::new("http://127.0.0.1:9/mirror/", "/tmp");
        let api = Api::new(&cfg).unwrap();
        let u = api.resolve_url("o/n", "abc1234", "sub dir/m.gguf").unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/mirror/o/n/resolve/abc1234/sub%20dir/m.gguf"
        );
        let cfg = HubConfig::new("http://example.com", "/tmp");
        let e = Api::new(&cfg).unwrap().url(["x"]).unwrap_err().to_string();
        assert!(e.contains("https://"), "{e}");
    }
}
