//! `pigpu doctor`: read-only checks of a Pi + NVIDIA GPU system (one file per area under
//! `checks/`), the kernel-log / tool-output signatures (`signatures`, `logs`), and the report
//! (`report`). Checks see the system only through [`patient::Patient`], so tests run them on fake roots.

pub mod checks;
pub mod fixes;
pub mod logs;
pub mod patient;
pub mod report;
pub mod signatures;
pub mod text;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::Serialize;

pub use patient::Patient;

/// How a finding reads. Order matters: worse is greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Could not be checked (not applicable, or the data was unavailable).
    Skip,
    /// Checked and fine.
    Ok,
    /// Worth knowing, not a problem (known-harmless kernel lines, facts).
    Info,
    /// Worth fixing, though it does not stop the GPU from working by itself (a slow link, a missing
    /// option).
    Warn,
    /// Something that stops the GPU or the driver from working.
    Fail,
}

/// One line of the report: a stable kebab-case id, what was found, the lines that show it,
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case id (`pcie-link`, `driver-version`): what `--check` and `--json` name it
    /// by.
    pub id: String,
    /// How it reads.
    pub status: Status,
    /// What was found, in one line.
    pub summary: String,
    /// The lines (file contents, log lines, values) that show it.
    pub evidence: Vec<String>,
    /// How to fix it: a command or an instruction; `None` when nothing is to be done.
    pub fix: Option<String>,
}

impl Finding {
    /// A finding with no evidence and no fix.
    pub fn new(id: &str, status: Status, summary: impl Into<String>) -> Finding {
        Finding {
            id: id.to_string(),
            status,
            summary: summary.into(),
            evidence: Vec::new(),
            fix: None,
        }
    }
    /// An `Ok` finding.
    pub fn ok(id: &str, summary: impl Into<String>) -> Finding {
        Finding::new(id, Status::Ok, summary)
    }
    /// An `Info` finding.
    pub fn info(id: &str, summary: impl Into<String>) -> Finding {
        Finding::new(id, Status::Info, summary)
    }
    /// A `Warn` finding.
    pub fn warn(id: &str, summary: impl Into<String>) -> Finding {
        Finding::new(id, Status::Warn, summary)
    }
    /// A `Fail` finding.
    pub fn fail(id: &str, summary: impl Into<String>) -> Finding {
        Finding::new(id, Status::Fail, summary)
    }
    /// A `Skip` finding.
    pub fn skip(id: &str, summary: impl Into<String>) -> Finding {
        Finding::new(id, Status::Skip, summary)
    }
    /// Adds one line of evidence.
    pub fn evidence(mut self, line: impl Into<String>) -> Finding {
        self.evidence.push(line.into());
        self
    }
    /// Adds several lines of evidence.
    pub fn evidence_all<I: IntoIterator<Item = S>, S: Into<String>>(mut self, lines: I) -> Finding {
        self.evidence.extend(lines.into_iter().map(Into::into));
        self
    }
    /// Sets the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything doctor found, in check order, and what to do about it ([`fixes::plan`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every finding, in check order.
    pub checks: Vec<Finding>,
    /// The distinct fix commands, in the order to apply them, with the findings each addresses.
    pub fixes: Vec<fixes::FixGroup>,
    /// The first of them (`null` when nothing needs fixing).
    pub next: Option<fixes::Next>,
}

impl Report {
    /// Whether any finding is `Fail` (doctor exits 1 then).
    pub fn has_failures(&self) -> bool {
        self.checks.iter().any(|f| f.status == Status::Fail)
    }
    /// The first finding with this id.
    pub fn find(&self, id: &str) -> Option<&Finding> {
        self.checks.iter().find(|f| f.id == id)
    }
}

/// A check: a stable id (the area) and a function from the host to findings.
pub struct Check {
    /// The area's id, as `--check` takes it (`pcie`, `driver`).
    pub id: &'static str,
    /// Examines the patient and returns the area's findings.
    pub run: fn(&Patient) -> anyhow::Result<Vec<Finding>>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs each check in turn; a check that panics becomes a `fail` finding and one that returns
/// an error a `skip` finding, both under the check's own id, and the remaining checks still run.
fn run_checks(host: &Patient, checks: &[Check]) -> Report {
    // Keep panic messages out of the user's terminal: they become findings instead.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_string()
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
    let mut out = Vec::new();
    for check in checks {
        match catch_unwind(AssertUnwindSafe(|| (check.run)(host))) {
            Ok(Ok(findings)) => out.extend(findings),
            Ok(Err(e)) => out.push(
                Finding::skip(
                    check.id,
                    format!("check '{}' could not run: {e:#}", check.id),
                )
                .fix("see the error above; the other checks still ran"),
            ),
            Err(_) => {
                let msg = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "panic".into());
                out.push(
                    Finding::fail(
                        check.id,
                        format!("check '{}' crashed: {msg}", check.id),
                    )
                    .fix("this is a bug in pigpu doctor: please report it with this output; the other checks still ran"),
                );
            }
        }
    }
    std::panic::set_hook(previous);
    Report {
        checks: out,
        ..Report::default()
    }
}

/// Doctor on the system behind `host`: every area check, in order.
pub fn diagnose_system(host: &Patient, only: &[String]) -> Report {
    let selected: Vec<Check> = checks::all()
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.id))
        .collect();
    run_checks(host, &selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boom(_: &Patient) -> anyhow::Result<Vec<Finding>> {
        let v: Vec<u8> = Vec::new();
        // An out-of-bounds index: the kind of bug isolation must survive.
        let i = v.len() + 3;
        Ok(vec![Finding::ok("never", format!("{}", v[i]))])
    }
    fn erring(_: &Patient) -> anyhow::Result<Vec<Finding>> {
        anyhow::bail!("cannot read /proc/nothing")
    }
    fn fine(_: &Patient) -> anyhow::Result<Vec<Finding>> {
        Ok(vec![Finding::ok("fine", "all good")])
    }

    #[test]
    fn a_crashing_or_failing_check_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let host = Patient::fake(dir.path());
        let r = run_checks(
            &host,
            &[
                Check {
                    id: "boom",
                    run: boom,
                },
                Check {
                    id: "erring",
                    run: erring,
                },
                Check {
                    id: "fine",
                    run: fine,
                },
            ],
        );
        assert_eq!(r.checks.len(), 3);
        let b = r.find("boom").unwrap();
        assert_eq!(b.status, Status::Fail);
        assert!(b.summary.contains("index out of bounds"), "{}", b.summary);
        let e = r.find("erring").unwrap();
        assert_eq!(e.status, Status::Skip);
        assert!(e.summary.contains("/proc/nothing"));
        assert_eq!(r.find("fine").unwrap().status, Status::Ok);
        assert!(r.has_failures());
    }
}
