//! A small HTTP/1.1 server on 127.0.0.1 for the setup tests: serves fixture bytes by path,
//! honours `Range: bytes=N-` with 206 answers, records every request, and can stall half-way
//! through one file (to interrupt a download the way a dropped connection does).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || handle(conn, &s));
            }
        });
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

fn handle(mut conn: TcpStream, s: &Shared) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    s.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let Some(body) = s.files.lock().unwrap().get(&path).cloned() else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let part = &body[start.min(body.len())..];
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
            part.len(),
            start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            part.len()
        )
    };
    let _ = conn.write_all(head.as_bytes());
    let stall = s.stall.lock().unwrap().as_deref() == Some(path.as_str());
    if stall {
        let half = part.len() / 2;
        let _ = conn.write_all(&part[..half]);
        let _ = conn.flush();
        // Give the client time to write what it got, then report the stall and hold on.
        thread::sleep(Duration::from_millis(300));
        s.stalled.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_secs(30));
        return;
    }
    let _ = conn.write_all(part);
}
