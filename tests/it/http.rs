//! The plumbing both local HTTP/1.1 test servers share (the setup tests' file mirror in
//! `setup/server.rs`, the fake Hugging Face Hub in `hub/server.rs`): a listener on 127.0.0.1 with
//! a thread per connection, the request line and headers, plain replies, and bodies sent whole,
//! from a `Range: bytes=N-` offset, or cut half-way the way a dropped connection cuts them.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A request as the servers see it: method, target (path and query) and headers.
pub struct Request {
    pub method: String,
    pub target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Serves on a free port of 127.0.0.1, one thread per connection, and returns the base URL
/// (`http://127.0.0.1:PORT`). `handler` gets the connection, the parsed request and that base.
pub fn start<F>(handler: F) -> String
where
    F: Fn(&mut TcpStream, Request, &str) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (handler, b) = (Arc::new(handler), base.clone());
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let (handler, b) = (handler.clone(), b.clone());
            thread::spawn(move || {
                if let Some(req) = read_request(&conn) {
                    handler(&mut conn, req, &b);
                }
            });
        }
    });
    base
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.to_string(), v.trim().to_string()));
        }
    }
    Some(Request {
        method,
        target,
        headers,
    })
}

/// Answers `status` (`"404 Not Found"`) with `headers` and the whole `body`.
pub fn reply(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

/// A download to break off: half the body is sent, then `reached` is raised and the connection
/// held open for `hold` (so a test can look at what the client wrote so far) before it drops.
pub struct Cut<'a> {
    pub reached: &'a AtomicBool,
    pub hold: Duration,
}

/// Sends `body` as a file download: 200 with all of it, or with a `Range: bytes=N-` header 206
/// with the bytes from N on; `cut` breaks the download off half-way.
pub fn send_file(conn: &mut TcpStream, body: &[u8], range: Option<&str>, cut: Option<Cut>) {
    let start: usize = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(body.len());
    let part = &body[start..];
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            part.len(),
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
    let Some(cut) = cut else {
        let _ = conn.write_all(part);
        return;
    };
    let _ = conn.write_all(&part[..part.len() / 2]);
    let _ = conn.flush();
    // Give the client time to write what it got before saying the cut was reached.
    thread::sleep(Duration::from_millis(300));
    cut.reached.store(true, Ordering::SeqCst);
    thread::sleep(cut.hold);
    let _ = conn.shutdown(Shutdown::Both);
}
