//! A pseudo-terminal for tests that need pigpu to see a real terminal (chat's line editor,
//! Ctrl-C): the child gets the pty as its controlling terminal and stdin/stdout/stderr, a thread
//! collects what it writes, and the test types bytes and waits for text.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    master: File,
    out: Arc<Mutex<Vec<u8>>>,
    /// How much of the cleaned screen text the test has already matched.
    seen: usize,
    pub child: Child,
}

/// Screen text without terminal escapes (CSI sequences, `ESC x` pairs) and carriage returns,
/// so a test matches what a person reads.
pub fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => {
                if it.next() == Some('[') {
                    // Parameters and intermediates, then one final byte in @..~.
                    for c in it.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Pty {
    /// Starts `cmd` on a new 50×200 pty.
    pub fn spawn(mut cmd: Command) -> Pty {
        let (mut m, mut s) = (0, 0);
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the locals; a null name and termios ask
        // for defaults, and the winsize pointer is valid for the call.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
        let (master, slave) = unsafe { (File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .env("TERM", "xterm");
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, then the
        // pty (already stdin) becomes its controlling terminal, so Ctrl-C typed on it is SIGINT.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn pigpu on a pty");
        // The parent's copies of the slave end close with `cmd`, so reads end when the child does.
        drop(cmd);
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child has closed the terminal: the end.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            out,
            seen: 0,
            child,
        }
    }

    /// Everything on screen so far, cleaned.
    pub fn screen(&self) -> String {
        clean(&self.out.lock().unwrap())
    }

    /// Types `text` (use `\r` for Enter, `\x03` for Ctrl-C, `\x1b[A` for Up).
    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits up to `secs` for `needle` after what was matched before; returns the text from there
    /// up to and including it. Panics with the screen on a timeout.
    pub fn expect(&mut self, needle: &str, secs: u64) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if let Some(i) = s.get(self.seen..).and_then(|rest| rest.find(needle)) {
                let end = self.seen + i + needle.len();
                let got = s[self.seen..end].to_string();
                self.seen = end;
                return got;
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                panic!(
                    "waited {secs} s for {needle:?}; the screen after the last match:\n{}",
                    s.get(self.seen..).unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `n` more characters have appeared after the last match.
    pub fn expect_more(&mut self, n: usize, secs: u64) {
        let t0 = Instant::now();
        while self.screen().len() < self.seen + n {
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {n} characters; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `secs` for the child to exit.
    pub fn wait(&mut self, secs: u64) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                let _ = self.child.kill();
                panic!("pigpu did not exit in {secs} s; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // A failed test must not leave a chat waiting on its terminal.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
