//! Progress of long tasks (a download, the weights' warm-up, uploading weights to the GPU):
//! library code reports how far it is through a [`Reporter`]; only the command layer draws it
//! (`cmd/progress.rs`), so a library never writes to the terminal and tests hear nothing.

use std::fmt;
use std::sync::Arc;

/// What hears about progress. Called once per chunk of work (every 64 KiB of a download), so
/// implementations must be cheap; they decide themselves whether and how often to draw.
pub trait Progress: Send + Sync {
    /// A task begins: `task` names it for a person ("downloading x.gguf"), `total` is its size
    /// in bytes when known, `done` where it starts (a resumed download starts part-way).
    fn start(&self, task: &str, total: Option<u64>, done: u64);
    /// The task has reached `done` bytes.
    fn set(&self, done: u64);
    /// The task ended, finished or not.
    fn finish(&self);
}

/// A cloneable handle to a [`Progress`], or to nothing (the default: tests, scripts, `-q`).
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<dyn Progress>>);

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reporter(on)"
        } else {
            "Reporter(silent)"
        })
    }
}

impl Reporter {
    /// Reports to `p`.
    pub fn new(p: Arc<dyn Progress>) -> Reporter {
        Reporter(Some(p))
    }

    /// Reports to nobody.
    pub fn silent() -> Reporter {
        Reporter(None)
    }

    /// Begins a task; it finishes when the returned guard is dropped, so an early `?` return
    /// still takes a bar off the screen.
    pub fn task(&self, task: &str, total: Option<u64>) -> Task<'_> {
        self.task_from(task, total, 0)
    }

    /// [`Reporter::task`] for a task already `done` bytes along.
    pub fn task_from(&self, task: &str, total: Option<u64>, done: u64) -> Task<'_> {
        if let Some(p) = &self.0 {
            p.start(task, total, done);
        }
        Task {
            to: self.0.as_deref(),
            done,
        }
    }
}

/// One task under way (see [`Reporter::task`]).
pub struct Task<'a> {
    to: Option<&'a dyn Progress>,
    done: u64,
}

impl Task<'_> {
    /// `n` more bytes are done.
    pub fn add(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// `done` bytes are done in all.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if let Some(p) = self.to {
            p.set(done);
        }
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.to {
            p.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Writes down every call, to check what a task reports.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Progress for Log {
        fn start(&self, task: &str, total: Option<u64>, done: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {task} {total:?} {done}"));
        }
        fn set(&self, done: u64) {
            self.0.lock().unwrap().push(format!("set {done}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
    }

    #[test]
    fn a_task_reports_start_steps_and_finishes_when_dropped() {
        let log = Arc::new(Log::default());
        let r = Reporter::new(log.clone());
        {
            let mut t = r.task_from("downloading x", Some(10), 4);
            t.add(3);
            t.add(3);
            assert_eq!(t.done(), 10);
        }
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "start downloading x Some(10) 4",
                "set 7",
                "set 10",
                "finish"
            ]
        );
    }

    #[test]
    fn an_early_return_still_finishes_the_task() {
        fn fails(r: &Reporter) -> Result<(), ()> {
            let mut t = r.task("uploading", None);
            t.add(1);
            Err(())
        }
        let log = Arc::new(Log::default());
        assert!(fails(&Reporter::new(log.clone())).is_err());
        assert_eq!(log.0.lock().unwrap().last().unwrap(), "finish");
    }

    #[test]
    fn a_silent_reporter_counts_but_reports_nothing() {
        let r = Reporter::silent();
        let mut t = r.task("x", Some(5));
        t.add(5);
        assert_eq!(t.done(), 5);
        assert_eq!(format!("{r:?}"), "Reporter(silent)");
    }
}
