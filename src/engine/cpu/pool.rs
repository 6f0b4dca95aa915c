//! A small persistent thread pool for the CPU engine. A token of decoding runs a few hundred
//! short parallel jobs, so spawning threads per job would cost more than the work; the workers
//! spin briefly between jobs and only then go to sleep. The calling thread takes part.
//!
//! A job is a number of chunks that the threads take from a shared counter, so a thread the
//! OS has not scheduled (a busy Pi, more threads than free cores) holds nobody up: the others
//! take its chunks, and the job ends when no chunk is left and no thread is inside the job.
//! A thread that wakes late finds the job closed and never touches it.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A job: called as `f(chunk)` once for every chunk index.
type Job<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    /// Bumped once per job; sleeping workers wait for it to change.
    epoch: AtomicU64,
    /// Whether the current job may be entered.
    open: AtomicBool,
    /// Threads inside the current job (between entering and leaving).
    active: AtomicUsize,
    /// The next chunk to take, and how many there are.
    next: AtomicUsize,
    chunks: AtomicUsize,
    /// The current job with its lifetime erased: written only while `open` is false and no
    /// worker is `active`, read only by a worker that entered while `open` was true.
    job: UnsafeCell<Option<*const Job<'static>>>,
    panicked: AtomicBool,
    quit: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written by `run` only while the job is closed and `active == 0`, and read by
// a worker only after it counted itself in `active` and then saw `open` (all SeqCst), so a read
// never overlaps a write; `run` keeps the pointee alive until it closed the job and saw
// `active == 0` (see `Pool::run`).
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// Spin iterations before a waiting thread sleeps or yields (about 50–200 µs).
const SPIN: u32 = 1 << 15;

pub struct Pool {
    n: usize,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `n` threads in all (the caller plus `n − 1` workers).
    pub fn new(n: usize) -> Pool {
        let n = n.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            chunks: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let handles = (1..n)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("pigpu-cpu-{i}"))
                    .spawn(move || worker(s))
                    .expect("spawn a CPU engine thread")
            })
            .collect();
        Pool { n, shared, handles }
    }

    pub fn threads(&self) -> usize {
        self.n
    }

    /// Runs `f(c)` for every chunk `c` in `0..chunks`, spread over the threads, and returns
    /// when all are done. Each chunk runs exactly once, on any thread.
    pub fn run(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.n == 1 || chunks <= 1 {
            (0..chunks).for_each(f);
            return;
        }
        let s = &*self.shared;
        // SAFETY: the job is closed and no worker is active (the previous `run` waited for
        // that), so nobody reads `job` now; the erased lifetime is sound because this function
        // does not return before the job is closed again and `active` is back to 0.
        unsafe {
            let ptr: *const Job<'_> = f;
            *s.job.get() = Some(std::mem::transmute::<*const Job<'_>, *const Job<'static>>(
                ptr,
            ));
        }
        s.next.store(0, SeqCst);
        s.chunks.store(chunks, SeqCst);
        s.open.store(true, SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| take_chunks(s, f)));
        // No chunk is left to take: close the job, then wait for the threads inside it.
        s.open.store(false, SeqCst);
        let mut spins = 0u32;
        while s.active.load(SeqCst) != 0 {
            spins += 1;
            if spins < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: the job is closed and no worker is inside it.
        unsafe { *s.job.get() = None };
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a CPU engine worker thread panicked");
        }
    }
}

/// Runs chunks of the current job until none is left.
fn take_chunks(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let chunks = s.chunks.load(SeqCst);
    loop {
        let c = s.next.fetch_add(1, SeqCst);
        if c >= chunks {
            return;
        }
        f(c);
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        // Wait for a new epoch: spin, then sleep.
        let mut spins = 0u32;
        loop {
            if s.quit.load(SeqCst) {
                return;
            }
            let e = s.epoch.load(SeqCst);
            if e != seen {
                seen = e;
                break;
            }
            spins += 1;
            if spins < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            if s.epoch.load(SeqCst) == seen && !s.quit.load(SeqCst) {
                drop(s.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
            }
            s.sleepers.fetch_sub(1, SeqCst);
            spins = 0;
        }
        // Enter, then check the job is still open: if `run` closed it meanwhile, it either saw
        // us in `active` (and waits for us) or we see it closed (and touch nothing).
        s.active.fetch_add(1, SeqCst);
        if s.open.load(SeqCst) {
            // SAFETY: the job is open and we are counted in `active`, so `run` stored a live
            // job before opening it and keeps it alive until we leave.
            let job = unsafe { (*s.job.get()).expect("an open job is set") };
            // SAFETY: see above; the pointee outlives this call.
            let r = catch_unwind(AssertUnwindSafe(|| take_chunks(&s, unsafe { &*job })));
            if r.is_err() {
                s.panicked.store(true, SeqCst);
            }
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Chunks of `len` items for `threads` threads: about `per_thread` chunks each (so a thread
/// that falls behind can be covered by the others), each a multiple of `align` items. Returns
/// the chunk size; the chunk count is `len.div_ceil(size)`.
pub fn chunk_size(len: usize, threads: usize, per_thread: usize, align: usize) -> usize {
    let target = len.div_ceil((threads * per_thread).max(1));
    target.next_multiple_of(align).max(align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_exactly_once() {
        let pool = Pool::new(3);
        for round in 0..300 {
            let chunks = round % 17;
            let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(chunks, &|c| {
                hits[c].fetch_add(1, SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "round {round}");
        }
    }

    /// More threads than cores, with a thread stalled inside a chunk: the job still completes
    /// with every chunk run once, and a later job works.
    #[test]
    fn a_stalled_thread_does_not_lose_chunks() {
        let pool = Pool::new(4);
        let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        pool.run(64, &|c| {
            if c == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            hits[c].fetch_add(1, SeqCst);
        });
        assert!(hits.iter().all(|h| h.load(SeqCst) == 1));
        let total = AtomicUsize::new(0);
        pool.run(10, &|c| {
            total.fetch_add(c, SeqCst);
        });
        assert_eq!(total.load(SeqCst), 45);
    }

    #[test]
    fn a_panicking_chunk_reaches_the_caller() {
        let pool = Pool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|c| {
                if c == 5 {
                    panic!("chunk five");
                }
            })
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        pool.run(8, &|_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 8);
    }

    #[test]
    fn chunk_sizes_cover_the_range() {
        for len in [1, 7, 64, 100, 49152] {
            for threads in 1..5 {
                let size = chunk_size(len, threads, 4, 16);
                assert_eq!(size % 16, 0);
                assert!(len.div_ceil(size) >= 1);
                assert!(
                    len.div_ceil(size) <= threads * 4 + 1,
                    "{len} {threads} {size}"
                );
            }
        }
    }
}
