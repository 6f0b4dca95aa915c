//! A clear error, not "Bus error (core dumped)", when a model file shrinks while it is mapped.
//!
//! pigpu maps model files read-only instead of copying gigabytes of weights (see `gguf`). When
//! another program truncates the file or writes it anew in place while pigpu runs, a read of a
//! page past the new end raises SIGBUS, and by default the process dies without a word about why.
//! Each mapping is registered here ([`watch`]) with its address range and file name, and the
//! binary installs a handler ([`install`]): a fault inside a registered range writes one line
//! naming the file and exits with code 2; any other SIGBUS goes to the handler that was there
//! before (Rust's, or the default action), as if this module did not exist.
//!
//! Everything the handler touches is a fixed-size static of atomics, so it reads no lock and no
//! heap memory and calls only `write(2)`, `pause(2)`, `sigaction(2)`, `raise(3)` and `_exit(2)`.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;

/// Mappings watched at once, at most (serve and bench hold one model at a time; a test process
/// may hold a few). A mapping beyond this is not watched and faults as before.
const SLOTS: usize = 8;
/// Bytes of a file name kept for the message; a longer name is cut (and says so with `…`).
const NAME_BYTES: usize = 1024;

/// One watched mapping. `len` is 0 while the slot is free or being filled.
struct Slot {
    claimed: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    name_len: AtomicUsize,
    name: [AtomicU8; NAME_BYTES],
}

static WATCHED: [Slot; SLOTS] = [const {
    Slot {
        claimed: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        name_len: AtomicUsize::new(0),
        name: [const { AtomicU8::new(0) }; NAME_BYTES],
    }
}; SLOTS];

/// The SIGBUS action that was in place before [`install`], restored for faults that are not ours.
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Set by the first thread that reports a fault in a watched mapping: several threads reading
/// the shrunk file fault together, and only one writes the message (the others wait for its
/// `_exit`), so the line is never interleaved with itself.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// A watched mapping; dropping it stops the watch (drop it before unmapping).
#[derive(Debug)]
pub struct Watch {
    slot: Option<usize>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let s = &WATCHED[i];
            s.len.store(0, Ordering::Release);
            s.claimed.store(false, Ordering::Release);
        }
    }
}

/// Watches `len` bytes mapped at `start` from the file `path`.
pub fn watch(start: *const u8, len: usize, path: &Path) -> Watch {
    if len == 0 {
        return Watch { slot: None };
    }
    let Some(i) = WATCHED.iter().position(|s| {
        s.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }) else {
        log::debug!(
            "{} is not watched for truncation: {SLOTS} mappings are already",
            path.display()
        );
        return Watch { slot: None };
    };
    let s = &WATCHED[i];
    let name = path.as_os_str().as_bytes();
    let n = name.len().min(NAME_BYTES);
    for (cell, &b) in s.name.iter().zip(&name[..n]) {
        cell.store(b, Ordering::Relaxed);
    }
    s.name_len.store(n, Ordering::Relaxed);
    s.start.store(start as usize, Ordering::Relaxed);
    // Published last: the handler reads `len` first (Acquire) and then the rest.
    s.len.store(len, Ordering::Release);
    Watch { slot: Some(i) }
}

/// Installs the SIGBUS handler (once; later calls do nothing).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler only makes
        // async-signal-safe calls. PREVIOUS is written here once, before INSTALLED says so, and
        // only read by the handler after it has checked INSTALLED.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigbus as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            let prev = &raw mut PREVIOUS;
            if libc::sigaction(libc::SIGBUS, &new, (*prev).as_mut_ptr()) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
}

/// Writes all of `bytes` to stderr, as far as it goes.
fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: write(2) from a valid buffer of the given length; async-signal-safe.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &WATCHED {
        let len = s.len.load(Ordering::Acquire);
        let start = s.start.load(Ordering::Relaxed);
        if len == 0 || addr < start || addr - start >= len {
            continue;
        }
        if REPORTING.swap(true, Ordering::AcqRel) {
            // Another thread is writing the message and ends the process.
            loop {
                // SAFETY: pause(2) is async-signal-safe; it only waits.
                unsafe { libc::pause() };
            }
        }
        write_stderr(b"pigpu: error: the model file ");
        let n = s.name_len.load(Ordering::Relaxed).min(NAME_BYTES);
        let mut buf = [0u8; NAME_BYTES];
        for (b, cell) in buf.iter_mut().zip(&s.name[..n]) {
            *b = cell.load(Ordering::Relaxed);
        }
        write_stderr(&buf[..n]);
        if n == NAME_BYTES {
            write_stderr("…".as_bytes());
        }
        write_stderr(
            b" shrank or was rewritten while pigpu was using it (reading its memory map failed: \
              SIGBUS). Do not write over a model that is in use: put the new file beside it and \
              rename it into place, then start pigpu again.\n",
        );
        // SAFETY: _exit is async-signal-safe and ends the process without running anything else.
        unsafe { libc::_exit(2) };
    }
    // Not a watched mapping: hand the signal to the previous action (Rust's handler or the
    // default, which ends the process with SIGBUS as before).
    // SAFETY: sigaction and raise are async-signal-safe; PREVIOUS was set before INSTALLED.
    unsafe {
        if INSTALLED.load(Ordering::Acquire) {
            let prev = &raw const PREVIOUS;
            libc::sigaction(sig, (*prev).as_ptr(), std::ptr::null_mut());
        } else {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_claimed_and_given_back() {
        let a = [0u8; 16];
        let w = watch(a.as_ptr(), a.len(), Path::new("/models/a.gguf"));
        let i = w.slot.expect("a free slot");
        let s = &WATCHED[i];
        assert_eq!(s.len.load(Ordering::Acquire), 16);
        assert_eq!(s.start.load(Ordering::Relaxed), a.as_ptr() as usize);
        let n = s.name_len.load(Ordering::Relaxed);
        let name: Vec<u8> = s.name[..n]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(name, b"/models/a.gguf");
        drop(w);
        assert_eq!(s.len.load(Ordering::Acquire), 0);
        assert!(!s.claimed.load(Ordering::Acquire));
        // An empty mapping is never watched.
        assert!(watch(a.as_ptr(), 0, Path::new("x")).slot.is_none());
    }
}
