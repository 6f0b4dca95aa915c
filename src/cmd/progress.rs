//! The one progress display on stderr: it draws the tasks library code reports through
//! `sys::progress` (downloads, warm-up, weight upload), setup's spinner while a long command runs,
//! and the counters of bench and perplexity. Drawn only on a terminal, never under `-q` (or a
//! `PIGPU_LOG` below info) nor with `TERM=dumb`; it uses no colour, so `NO_COLOR` has nothing to
//! turn off. A finished bar is cleared: the line the command prints next is the one that stays.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sys::progress::{Progress, Reporter};

/// A task is drawn only once it has run this long: most loads and small downloads end sooner,
/// and a bar flashing up for a moment is noise.
const SHOW_AFTER: Duration = Duration::from_millis(300);

/// What is on screen now.
struct Shown {
    bar: ProgressBar,
    /// When the task started, and whether it is drawn yet (see [`SHOW_AFTER`]).
    since: Instant,
    drawn: bool,
}

/// The progress display. Cheap to ask when off: every call returns at once.
pub struct Display {
    on: bool,
    now: Mutex<Option<Shown>>,
}

impl Display {
    /// The display for this process: on when stderr is a terminal that can redraw a line and
    /// status lines are wanted (no `-q`).
    pub fn stderr() -> Arc<Display> {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Arc::new(Display::new(
            std::io::stderr().is_terminal() && !dumb && super::logging::status_lines(),
        ))
    }

    fn new(on: bool) -> Display {
        Display {
            on,
            now: Mutex::new(None),
        }
    }

    /// The handle library code reports to (silent when the display is off, so the library does
    /// not even format task names).
    pub fn reporter(self: &Arc<Display>) -> Reporter {
        if self.on {
            Reporter::new(self.clone())
        } else {
            Reporter::silent()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Shown>> {
        // A panic elsewhere while drawing leaves nothing worth protecting.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces what is on screen with `bar` (drawn at once, or after [`SHOW_AFTER`]).
    fn show(&self, bar: ProgressBar, at_once: bool) {
        let mut now = self.lock();
        if let Some(old) = now.take() {
            old.bar.finish_and_clear();
        }
        if at_once {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        *now = Some(Shown {
            bar,
            since: Instant::now(),
            drawn: at_once,
        });
    }

    /// A spinner with `msg` and the time so far, until [`Display::clear`] (setup's long
    /// commands: a kernel build, an apt install).
    pub fn spinner(&self, msg: String) {
        if !self.on {
            return;
        }
        if let Some(s) = self.lock().as_ref().filter(|s| s.bar.length().is_none()) {
            s.bar.set_message(msg);
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(msg);
        bar.enable_steady_tick(Duration::from_millis(200));
        self.show(bar, true);
    }

    /// A line rewritten in place (`bench: pp64: repetition 3/5`).
    pub fn counter(&self, text: String) {
        if !self.on {
            return;
        }
        let mut now = self.lock();
        if let Some(s) = now.as_ref() {
            if s.bar.length().is_none() {
                s.bar.set_message(text);
                return;
            }
        }
        if let Some(old) = now.take() {
            old.bar.finish_and_clear();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(text);
        *now = Some(Shown {
            bar,
            since: Instant::now(),
            drawn: true,
        });
    }

    /// Takes whatever is drawn off the screen.
    pub fn clear(&self) {
        if let Some(s) = self.lock().take() {
            s.bar.finish_and_clear();
        }
    }

    /// Prints a line on stderr above whatever is drawn (which is redrawn below it).
    pub fn println(&self, line: &str) {
        match self.lock().as_ref().filter(|s| s.drawn) {
            Some(s) => s.bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Progress for Display {
    fn start(&self, task: &str, total: Option<u64>, done: u64) {
        let template = if total.is_some() {
            "{wide_msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{wide_msg} {spinner} {bytes} {bytes_per_sec}"
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(task.to_string());
        bar.set_position(done);
        // A resumed download's rate counts only what this run fetched.
        bar.reset_eta();
        self.show(bar, false);
    }

    fn set(&self, done: u64) {
        let mut now = self.lock();
        if let Some(s) = now.as_mut() {
            if !s.drawn && s.since.elapsed() >= SHOW_AFTER {
                s.bar.set_draw_target(ProgressDrawTarget::stderr());
                s.drawn = true;
            }
            s.bar.set_position(done);
        }
    }

    fn finish(&self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_off_display_reports_nothing_and_draws_nothing() {
        let d = Arc::new(Display::new(false));
        assert_eq!(format!("{:?}", d.reporter()), "Reporter(silent)");
        d.spinner("building".into());
        d.counter("bench: pp64".into());
        assert!(d.lock().is_none());
    }

    #[test]
    fn a_task_is_held_back_until_it_has_run_a_while_and_cleared_when_done() {
        let d = Arc::new(Display::new(true));
        let r = d.reporter();
        {
            let mut t = r.task("loading", Some(100));
            t.set(10);
            assert!(!d.lock().as_ref().unwrap().drawn, "drawn at once");
            d.lock().as_mut().unwrap().since -= SHOW_AFTER;
            t.set(20);
            let now = d.lock();
            let s = now.as_ref().unwrap();
            assert!(s.drawn);
            assert_eq!(s.bar.position(), 20);
        }
        assert!(d.lock().is_none(), "a finished task stays on screen");
    }

    #[test]
    fn a_counter_is_one_line_rewritten_and_a_task_replaces_it() {
        let d = Arc::new(Display::new(true));
        d.counter("pp64: warm-up".into());
        d.counter("pp64: repetition 1/5".into());
        assert_eq!(
            d.lock().as_ref().unwrap().bar.message(),
            "pp64: repetition 1/5"
        );
        let r = d.reporter();
        let t = r.task("uploading", Some(8));
        assert_eq!(d.lock().as_ref().unwrap().bar.length(), Some(8));
        drop(t);
        assert!(d.lock().is_none());
    }
}
