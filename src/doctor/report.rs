//! The report as people read it (`[✓] [!] [✗] [i] [-]` per finding, evidence and fix indented
//! under each problem, colour only on a terminal; then the fixes in order and a closing `Next:`
//! line) and as programs read it (`--json`).

use std::fmt::Write as _;

use super::{Report, Status};

fn mark(s: Status) -> &'static str {
    match s {
        Status::Ok => "[✓]",
        Status::Info => "[i]",
        Status::Warn => "[!]",
        Status::Fail => "[✗]",
        Status::Skip => "[-]",
    }
}

fn colour(s: Status) -> &'static str {
    match s {
        Status::Ok => "\x1b[32m",
        Status::Info => "\x1b[36m",
        Status::Warn => "\x1b[33m",
        Status::Fail => "\x1b[31m",
        Status::Skip => "\x1b[2m",
    }
}

/// The human report. `title` says what was examined.
pub fn human(report: &Report, title: &str, colour_on: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pigpu doctor: {title}");
    let c = |s: Status| -> (&str, &str) {
        if colour_on {
            (colour(s), "\x1b[0m")
        } else {
            ("", "")
        }
    };
    for f in &report.checks {
        let (on, off) = c(f.status);
        let _ = writeln!(out, "{on}{}{off} {}: {}", mark(f.status), f.id, f.summary);
        // Evidence for everything that is not plainly fine; ok lines stay one line.
        if f.status >= Status::Info {
            for e in &f.evidence {
                let _ = writeln!(out, "      {e}");
            }
        }
        if let Some(fix) = &f.fix {
            if f.status >= Status::Warn || f.status == Status::Skip {
                let _ = writeln!(out, "      fix: {fix}");
            }
        }
    }
    let count = |s: Status| report.checks.iter().filter(|f| f.status == s).count();
    let _ = writeln!(
        out,
        "\n{} ok, {} warning(s), {} failure(s), {} info, {} skipped",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Info),
        count(Status::Skip)
    );
    if report.fixes.len() > 1 {
        let _ = writeln!(out, "\nTo fix, in order:");
        for (i, g) in report.fixes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {}  ({})",
                i + 1,
                g.command,
                g.findings.join(", ")
            );
        }
    }
    if let Some(n) = &report.next {
        let _ = writeln!(
            out,
            "\nNext: {}  (addresses {} of {} finding(s): {})",
            n.command,
            n.addresses,
            n.of,
            n.findings.join(", ")
        );
    }
    out
}

/// `{"checks": [{"id", "status", "summary", "evidence", "fix"}], "fixes": [{"command",
/// "findings"}], "next": {"command", "addresses", "of", "findings"} | null}`.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Finding;

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let mut r = Report {
            checks: vec![
                Finding::fail("pcie-link-down", "no GPU")
                    .evidence("x")
                    .fix("y"),
                Finding::ok("platform", "Pi 5"),
            ],
            ..Report::default()
        };
        crate::doctor::fixes::plan(&mut r, Some(true));
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            vec!["checks", "fixes", "next"]
        );
        assert_eq!(v["next"]["command"], "y");
        assert_eq!(v["next"]["addresses"], 1);
        assert_eq!(v["fixes"][0]["findings"][0], "pcie-link-down");
        let c = v["checks"][0].as_object().unwrap();
        let mut keys: Vec<_> = c.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["evidence", "fix", "id", "status", "summary"]);
        assert_eq!(v["checks"][0]["status"], "fail");
        assert_eq!(v["checks"][1]["fix"], serde_json::Value::Null);
    }

    #[test]
    fn human_marks_and_no_colour_off_a_terminal() {
        let mut r = Report {
            checks: vec![
                Finding::fail("a", "bad").evidence("line 1").fix("do x"),
                Finding::warn("b", "meh"),
                Finding::ok("c", "fine").evidence("hidden"),
            ],
            ..Report::default()
        };
        crate::doctor::fixes::plan(&mut r, Some(true));
        let h = human(&r, "test", false);
        assert!(
            h.contains("[✗] a: bad\n      line 1\n      fix: do x\n"),
            "{h}"
        );
        assert!(h.contains("[!] b: meh"));
        assert!(h.contains("[✓] c: fine\n"));
        assert!(!h.contains("hidden"));
        assert!(!h.contains('\x1b'));
        assert!(
            h.trim_end()
                .ends_with("Next: do x  (addresses 1 of 2 finding(s): a)"),
            "{h}"
        );
        assert!(human(&r, "t", true).contains("\x1b[31m[✗]\x1b[0m"));
    }
}
