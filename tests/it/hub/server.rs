//! A local HTTP/1.1 server that answers like the Hugging Face Hub: the model-info listing
//! (`/api/models/ORG/NAME/revision/main?blobs=true`), the file endpoint (`/ORG/NAME/resolve/
//! COMMIT/FILE`, a 302 to a CDN-like URL with `X-Linked-Etag`/`X-Linked-Size`), and the CDN
//! (`/cdn/SHA`, with `Range`). It records every request (method, path, Authorization, Range),
//! can be told to answer a path with a status code, and can cut one download half-way.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::http::{self, reply, Cut, Request};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request seen.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub auth: Option<String>,
    pub range: Option<String>,
}

/// A file of a fake repo.
#[derive(Clone)]
pub struct HubFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// The sha256 the Hub claims (the real one unless a test tampers with it).
    pub sha256: String,
    /// Whether the listing carries the LFS object (else only the file endpoint's headers do).
    pub listed_lfs: bool,
    /// What `X-Linked-Etag` says, when not `sha256`.
    pub linked: Option<String>,
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl HubFile {
    pub fn new(path: &str, bytes: Vec<u8>) -> HubFile {
        HubFile {
            path: path.to_string(),
            sha256: sha256_hex(&bytes),
            bytes,
            listed_lfs: true,
            linked: None,
        }
    }
}

#[derive(Default)]
struct Shared {
    repos: Mutex<HashMap<String, Vec<HubFile>>>,
    seen: Mutex<Vec<Seen>>,
    /// Path prefix → status code (and a Retry-After for 429).
    forced: Mutex<Vec<(String, u16)>>,
    /// CDN sha whose next download sends half its bytes, pauses, then drops the connection.
    cut: Mutex<Option<String>>,
    cut_reached: AtomicBool,
}

pub struct HubServer {
    pub base: String,
    shared: Arc<Shared>,
}

impl HubServer {
    pub fn start() -> HubServer {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let base = http::start(move |conn, req, base| handle(conn, &req, &s, base));
        HubServer { base, shared }
    }

    pub fn repo(&self, id: &str, files: Vec<HubFile>) {
        self.shared
            .repos
            .lock()
            .unwrap()
            .insert(id.to_string(), files);
    }

    pub fn force(&self, path_prefix: &str, status: u16) {
        self.shared
            .forced
            .lock()
            .unwrap()
            .push((path_prefix.to_string(), status));
    }

    pub fn cut_once(&self, sha: &str) {
        *self.shared.cut.lock().unwrap() = Some(sha.to_string());
    }

    pub fn cut_reached(&self) -> bool {
        self.shared.cut_reached.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

fn listing(files: &[HubFile]) -> Vec<u8> {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut s = serde_json::json!({"rfilename": f.path, "size": f.bytes.len()});
            if f.listed_lfs {
                s["lfs"] = serde_json::json!({
                    "sha256": f.sha256, "size": f.bytes.len(), "pointerSize": 134
                });
            }
            s
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": "x", "sha": COMMIT, "private": false, "siblings": siblings
    }))
    .unwrap()
}

fn handle(conn: &mut TcpStream, req: &Request, s: &Shared, base: &str) {
    let range = req.header("range");
    s.seen.lock().unwrap().push(Seen {
        method: req.method.clone(),
        path: req.target.clone(),
        auth: req.header("authorization"),
        range: range.clone(),
    });
    let path = req.path();
    let forced = s
        .forced
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| path.starts_with(p.as_str()))
        .map(|(_, c)| *c);
    if let Some(code) = forced {
        let text = match code {
            401 => "401 Unauthorized",
            403 => "403 Forbidden",
            404 => "404 Not Found",
            429 => "429 Too Many Requests",
            _ => "500 Internal Server Error",
        };
        reply(
            conn,
            text,
            &[("Retry-After", "7".into())],
            b"{\"error\":\"no\"}",
        );
        return;
    }
    let not_found = |conn: &mut TcpStream| {
        reply(
            conn,
            "404 Not Found",
            &[],
            b"{\"error\":\"Repository not found\"}",
        )
    };
    let repos = s.repos.lock().unwrap().clone();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some(id) = rest.strip_suffix("/revision/main") else {
            return not_found(conn);
        };
        match repos.get(id) {
            Some(files) => reply(
                conn,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                &listing(files),
            ),
            None => not_found(conn),
        }
        return;
    }
    // /cdn/ORG/NAME/SHA: per repo, so a tampered copy never serves another repo's bytes.
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let (id, sha) = rest.rsplit_once('/').unwrap_or(("", rest));
        let found = repos
            .get(id)
            .and_then(|fs| fs.iter().find(|f| f.sha256 == sha));
        let Some(f) = found.cloned() else {
            return not_found(conn);
        };
        return cdn(conn, s, sha, &f.bytes, range.as_deref());
    }
    // /ORG/NAME/resolve/COMMIT/FILE
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() == 5 && segs[2] == "resolve" {
        let id = format!("{}/{}", segs[0], segs[1]);
        let file = repos
            .get(&id)
            .and_then(|fs| fs.iter().find(|f| f.path == segs[4]).cloned());
        let Some(f) = file.filter(|_| segs[3] == COMMIT || segs[3] == "main") else {
            return not_found(conn);
        };
        let headers = [
            (
                "Location",
                format!("{base}/cdn/{id}/{}?X-Amz-Signature=abc", f.sha256),
            ),
            ("X-Repo-Commit", COMMIT.to_string()),
            (
                "X-Linked-Etag",
                format!("\"{}\"", f.linked.as_ref().unwrap_or(&f.sha256)),
            ),
            ("X-Linked-Size", f.bytes.len().to_string()),
            ("ETag", "\"0a1b2c3d\"".to_string()),
        ];
        return reply(conn, "302 Found", &headers, b"");
    }
    not_found(conn)
}

fn cdn(conn: &mut TcpStream, s: &Shared, sha: &str, body: &[u8], range: Option<&str>) {
    let cut = {
        let mut c = s.cut.lock().unwrap();
        c.as_deref() == Some(sha) && c.take().is_some()
    };
    // Hold the half-done download open while the test looks at the cache, then drop it.
    let cut = cut.then_some(Cut {
        reached: &s.cut_reached,
        hold: Duration::from_millis(1500),
    });
    http::send_file(conn, body, range, cut);
}
