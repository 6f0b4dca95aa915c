//! A small HTTP/1.1 server on 127.0.0.1 for the setup tests: serves fixture bytes by path,
//! honours `Range: bytes=N-` with 206 answers, records every request, and can stall half-way
//! through one file (to interrupt a download the way a dropped connection does).

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::{self, Cut, Request};

/// One request seen: path and the Range header, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Vec<u8>>>,
    seen: Mutex<Vec<Seen>>,
    /// Path to send only half of (then hold the connection open).
    stall: Mutex<Option<String>>,
    stalled: AtomicBool,
}

pub struct Server {
    pub base: String,
    shared: Arc<Shared>,
}

impl Server {
    pub fn start() -> Server {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let base = http::start(move |conn, req, _| handle(conn, &req, &s));
        Server { base, shared }
    }

    pub fn add(&self, path: &str, bytes: Vec<u8>) {
        self.shared
            .files
            .lock()
            .unwrap()
            .insert(path.to_string(), bytes);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn stall_on(&self, path: Option<&str>) {
        *self.shared.stall.lock().unwrap() = path.map(str::to_string);
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    pub fn has_stalled(&self) -> bool {
        self.shared.stalled.load(Ordering::SeqCst)
    }
}

fn handle(conn: &mut TcpStream, req: &Request, s: &Shared) {
    let range = req.header("range");
    s.seen.lock().unwrap().push(Seen {
        path: req.target.clone(),
        range: range.clone(),
    });
    let Some(body) = s.files.lock().unwrap().get(&req.target).cloned() else {
        return http::reply(conn, "404 Not Found", &[], b"");
    };
    // A stalled download holds on long enough for the test to kill the client first.
    let stall = s.stall.lock().unwrap().as_deref() == Some(req.target.as_str());
    let cut = stall.then_some(Cut {
        reached: &s.stalled,
        hold: Duration::from_secs(30),
    });
    http::send_file(conn, &body, range.as_deref(), cut);
}
