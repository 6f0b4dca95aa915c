//! Downloads for setup: HTTPS only (plain HTTP only to a loopback address, for test servers),
//! resumed with a `Range` request after an interruption, hashed with sha256 while streaming, kept
//! in a cache directory so a second run downloads nothing. A digest mismatch is a typed error
//! and the bad bytes are deleted. Local paths (an air-gapped copy) go through the same hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::progress::{Reporter, Task};

/// Why a download did not give the pinned bytes.
#[derive(Debug, Error)]
pub enum DownloadError {
    /// The URL is neither https nor plain http to the local machine.
    #[error("download {url}: refused: only https:// is allowed (plain http only to 127.0.0.1/::1/localhost)")]
    Insecure {
        /// The URL refused.
        url: String,
    },
    /// The URL does not parse.
    #[error("download {url}: not a valid URL: {message}")]
    BadUrl {
        /// The text given.
        url: String,
        /// The parser's complaint.
        message: String,
    },
    /// No HTTP answer (DNS, TLS, connection, timeout).
    #[error("download {url}: {source}")]
    Http {
        /// The URL asked (empty when building the client failed).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("download {url}: server answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status answered.
        status: StatusCode,
    },
    #[error(
        "download {url}: connection ended after {got} of {expected} bytes; run again to resume"
    )]
    /// The connection ended before `Content-Length` bytes arrived; a rerun resumes.
    Truncated {
        /// The URL asked.
        url: String,
        /// Bytes received so far (including a resumed part).
        got: u64,
        /// Bytes the server announced.
        expected: u64,
    },
    /// Reading or writing the cache failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes arrived but their sha256 is not the pinned one.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
}

/// The bytes fetched are not the bytes pinned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("checksum mismatch for {what} from {location}: expected sha256 {expected}, got {actual} (the file was deleted; nothing was installed)")]
pub struct ChecksumError {
    /// What was fetched (a driver source, a model file).
    pub what: String,
    /// Where it came from (URL or repo path).
    pub location: String,
    /// The pinned sha256 (hex).
    pub expected: String,
    /// The sha256 of the bytes received (hex).
    pub actual: String,
}

/// A file in the cache and what it took to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where the file is in the cache.
    pub path: PathBuf,
    /// Its sha256 (hex), equal to the pinned one.
    pub sha256: String,
    /// Bytes transferred by this call (0: served from the cache).
    pub transferred: u64,
    /// This call continued an interrupted download.
    pub resumed: bool,
}

/// Fetches into a cache directory.
pub struct Downloader {
    cache: PathBuf,
    client: reqwest::blocking::Client,
    /// Hears how far each transfer is (the command layer draws it).
    progress: Reporter,
    /// Sent as `Authorization: Bearer` (the Hub's `HF_TOKEN`); reqwest drops it on a redirect
    /// to another host, so a CDN never sees it.
    bearer: Option<String>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The redirect policy of pigpu's HTTP clients: up to 10 redirects, each to a URL that
/// [`url_allowed`] (so never down to plain http off this machine).
pub fn allowed_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if url_allowed(attempt.url()) {
            attempt.follow()
        } else {
            attempt.error("redirect to a non-https URL refused")
        }
    })
}

/// Whether a URL may be fetched: https anywhere, http only to loopback.
pub fn url_allowed(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some("localhost") => true,
            Some(h) => h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|a| a.is_loopback()),
            None => false,
        },
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    hash_into(&mut File::open(path)?, &mut h)?;
    Ok(hex(&h.finalize()))
}

fn hash_into(r: &mut dyn Read, h: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

impl Downloader {
    /// A downloader that keeps files under `cache` and reports progress to `progress`.
    pub fn new(cache: impl Into<PathBuf>, progress: Reporter) -> Result<Downloader, DownloadError> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Large files on slow links: no overall deadline (the default is 30 s).
            .timeout(None::<Duration>)
            .user_agent(concat!("pigpu/", env!("CARGO_PKG_VERSION")))
            // Follow redirects (GitHub archives go to codeload) but never down to plain http.
            .redirect(allowed_redirects())
            .build()
            .map_err(|source| DownloadError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Downloader {
            cache: cache.into(),
            client,
            progress,
            bearer: None,
        })
    }

    /// Sends `token` as a bearer token with every request (private and gated Hub repos).
    pub fn with_bearer(mut self, token: Option<String>) -> Downloader {
        self.bearer = token;
        self
    }

    /// The directory files are cached in.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Where `file` lives in the cache.
    fn cached_path(&self, file: &str) -> PathBuf {
        self.cache.join(file)
    }

    /// The cached file when it is there and (if `expected` is given) has that digest.
    pub fn cached(&self, file: &str, expected: Option<&str>) -> Option<Fetched> {
        let path = self.cached_path(file);
        let actual = sha256_file(&path).ok()?;
        if expected.is_some_and(|e| e != actual) {
            return None;
        }
        Some(Fetched {
            path,
            sha256: actual,
            transferred: 0,
            resumed: false,
        })
    }

    /// Gets `location` (a URL or a local path) into the cache as `file`, checking `expected`.
    pub fn fetch(
        &self,
        what: &str,
        location: &str,
        file: &str,
        expected: Option<&str>,
    ) -> Result<Fetched, DownloadError> {
        fs::create_dir_all(&self.cache).map_err(io_err(&self.cache))?;
        let dest = self.cached_path(file);
        if dest.exists() {
            if let Some(hit) = self.cached(file, expected) {
                return Ok(hit);
            }
            // A stale or damaged copy: fetch again.
            fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
        let part = self.cache.join(format!("{file}.part"));
        let (sha, transferred, resumed) = if location.contains("://") {
            self.fetch_url(location, &part)?
        } else {
            let src = Path::new(location);
            let mut h = Sha256::new();
            let mut input = File::open(src).map_err(io_err(src))?;
            let mut out = File::create(&part).map_err(io_err(&part))?;
            let size = input.metadata().ok().map(|m| m.len());
            let mut task = self.progress.task(&format!("copying {file}"), size);
            let n = copy_hashing(&mut input, &mut out, &mut h, &mut task).map_err(io_err(src))?;
            drop(task);
            out.sync_all().map_err(io_err(&part))?;
            (hex(&h.finalize()), n, false)
        };
        if let Some(exp) = expected {
            if exp != sha {
                let _ = fs::remove_file(&part);
                return Err(ChecksumError {
                    what: what.to_string(),
                    location: location.to_string(),
                    expected: exp.to_string(),
                    actual: sha,
                }
                .into());
            }
        }
        fs::rename(&part, &dest).map_err(io_err(&dest))?;
        Ok(Fetched {
            path: dest,
            sha256: sha,
            transferred,
            resumed,
        })
    }

    fn fetch_url(&self, url_text: &str, part: &Path) -> Result<(String, u64, bool), DownloadError> {
        let url = reqwest::Url::parse(url_text).map_err(|e| DownloadError::BadUrl {
            url: url_text.to_string(),
            message: e.to_string(),
        })?;
        if !url_allowed(&url) {
            return Err(DownloadError::Insecure {
                url: url_text.to_string(),
            });
        }
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let http = |source| DownloadError::Http {
            url: url_text.to_string(),
            source,
        };
        let mut req = self.client.get(url.clone());
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().map_err(http)?;
        let status = resp.status();
        let mut hasher = Sha256::new();
        let (mut out, start, resumed) = if have > 0 && status == StatusCode::PARTIAL_CONTENT {
            // Continue: the bytes already on disk go into the hash first.
            let starts_at = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if starts_at != Some(have) {
                return Err(DownloadError::Status {
                    url: url_text.to_string(),
                    status,
                });
            }
            let mut existing = File::open(part).map_err(io_err(part))?;
            hash_into(&mut existing, &mut hasher).map_err(io_err(part))?;
            let f = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(io_err(part))?;
            (f, have, true)
        } else if have > 0 && status == StatusCode::RANGE_NOT_SATISFIABLE {
            // The part file already holds everything.
            let mut existing = File::open(part).map_err(io_err(part))?;
            hash_into(&mut existing, &mut hasher).map_err(io_err(part))?;
            return Ok((hex(&hasher.finalize()), 0, true));
        } else if status.is_success() {
            // A full answer (also when the server ignores Range): start over.
            (File::create(part).map_err(io_err(part))?, 0, false)
        } else {
            return Err(DownloadError::Status {
                url: url_text.to_string(),
                status,
            });
        };
        let total = resp.content_length().map(|n| n + start);
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("");
        let mut task = self
            .progress
            .task_from(&format!("downloading {name}"), total, start);
        let got = copy_hashing(&mut resp, &mut out, &mut hasher, &mut task);
        drop(task);
        let got = match got {
            Ok(n) => n,
            Err(e) => {
                let _ = out.sync_all();
                let on_disk = fs::metadata(part).map(|m| m.len()).unwrap_or(start);
                return Err(match total {
                    Some(t) => DownloadError::Truncated {
                        url: url_text.to_string(),
                        got: on_disk,
                        expected: t,
                    },
                    None => DownloadError::Io {
                        path: part.to_path_buf(),
                        source: e,
                    },
                });
            }
        };
        out.sync_all().map_err(io_err(part))?;
        if let Some(t) = total {
            if start + got != t {
                return Err(DownloadError::Truncated {
                    url: url_text.to_string(),
                    got: start + got,
                    expected: t,
                });
            }
        }
        Ok((hex(&hasher.finalize()), got, resumed))
    }
}

fn copy_hashing(
    r: &mut dyn Read,
    w: &mut File,
    h: &mut Sha256,
    task: &mut Task<'_>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Written before hashing so that bytes on disk are always a prefix of what was hashed
        // on a resume (the part file is re-hashed then).
        w.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        total += n as u64;
        task.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        let ok = |u: &str| url_allowed(&reqwest::Url::parse(u).unwrap());
        assert!(ok("https://us.download.nvidia.com/x.run"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(ok("http://[::1]:8080/x"));
        assert!(ok("http://localhost/x"));
        assert!(!ok("http://example.com/x"));
        assert!(!ok("http://10.0.0.1/x"));
        assert!(!ok("ftp://127.0.0.1/x"));
        let t = tempfile::tempdir().unwrap();
        let d = Downloader::new(t.path(), Reporter::silent()).unwrap();
        let e = d
            .fetch("thing", "http://example.com/x.run", "x.run", None)
            .unwrap_err();
        assert!(matches!(e, DownloadError::Insecure { .. }), "{e}");
    }

    #[test]
    fn local_copies_are_hashed_and_checked() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src.bin");
        fs::write(&src, b"abc").unwrap();
        let d = Downloader::new(t.path().join("cache"), Reporter::silent()).unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let f = d
            .fetch("a", src.to_str().unwrap(), "a.bin", Some(abc))
            .unwrap();
        assert_eq!(f.sha256, abc);
        assert_eq!(f.transferred, 3);
        // Second time: from the cache.
        let again = d.fetch("a", "/nonexistent", "a.bin", Some(abc)).unwrap();
        assert_eq!(again.transferred, 0);
        let e = d
            .fetch("b", src.to_str().unwrap(), "b.bin", Some(&"0".repeat(64)))
            .unwrap_err();
        match e {
            DownloadError::Checksum(c) => assert_eq!(c.actual, abc),
            other => panic!("{other}"),
        }
        assert!(!d.cached_path("b.bin").exists());
        assert!(!t.path().join("cache/b.bin.part").exists());
    }
}
