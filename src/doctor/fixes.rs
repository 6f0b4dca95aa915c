//! From findings to what a person does next: fixes de-duplicated and grouped by the command
//! that applies them, fixes made moot by an earlier finding pointed at it, Pi-only fixes dropped
//! off a Pi, the groups ordered (worst first, then in check order, which is causal order: board,
//! kernel, boot config, PCIe, driver, Vulkan), and the first one as the `Next:` step.

use serde::Serialize;

use super::{Finding, Report, Status};

/// The command that provisions a Pi 5 family board; most Pi findings end in it.
pub const SETUP: &str = "sudo pigpu setup";

/// (cause, findings whose own fix is moot while the cause stands): with no module installed,
/// `modprobe nvidia` cannot help; on a 16K kernel, headers for it are not what is needed; a
/// port switched off explains a link that never came up.
const MOOT: &[(&str, &[&str])] = &[
    (
        "driver-modules",
        &["driver-loaded", "gpu-driver-bound", "device-nodes"],
    ),
    ("kernel-page-size", &["kernel-headers", "boot-kernel-image"]),
    ("pcie-port", &["pcie-link-down"]),
    ("pcie-link-down", &["vulkan-no-gpu"]),
];

/// Words that make a fix Pi-only.
const PI_ONLY: &[&str] = &["pigpu setup", "config.txt", "dtparam=", "kernel8.img"];

/// One command and the findings it addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixGroup {
    /// The command to run (a `pigpu setup …` line, or a shell command).
    pub command: String,
    /// Ids of the findings it addresses.
    pub findings: Vec<String>,
}

/// The step to take first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Next {
    /// The command to run first.
    pub command: String,
    /// How many findings (warnings and failures) it addresses.
    pub addresses: usize,
    /// How many warnings and failures there are in all.
    pub of: usize,
    /// Ids of the findings it addresses.
    pub findings: Vec<String>,
}

/// The command a fix text comes down to: every fix that runs setup is one command.
fn command_of(fix: &str) -> String {
    if fix.contains(SETUP) {
        SETUP.to_string()
    } else {
        fix.to_string()
    }
}

fn is_problem(f: &Finding) -> bool {
    f.status >= Status::Warn
}

/// Rewrites the fixes of `report` into an actionable plan and fills `report.fixes` and
/// `report.next`. `on_pi`: `Some(false)` drops Pi-only fixes; `None` (saved logs from an
/// unknown machine) keeps them.
pub fn plan(report: &mut Report, on_pi: Option<bool>) {
    if on_pi == Some(false) {
        for f in &mut report.checks {
            if f.fix
                .as_deref()
                .is_some_and(|x| PI_ONLY.iter().any(|w| x.contains(w)))
            {
                f.fix = None;
            }
        }
    }
    // Moot fixes point at their cause.
    let causes: Vec<(String, String)> = MOOT
        .iter()
        .filter_map(|(cause, _)| {
            let c = report
                .checks
                .iter()
                .find(|f| f.id == *cause && is_problem(f) && f.fix.is_some())?;
            Some((
                c.id.clone(),
                command_of(c.fix.as_deref().unwrap_or_default()),
            ))
        })
        .collect();
    let mut attributed: Vec<Option<String>> = vec![None; report.checks.len()];
    for (i, f) in report.checks.iter_mut().enumerate() {
        if !is_problem(f) {
            continue;
        }
        for (cause, moot) in MOOT {
            if !moot.contains(&f.id.as_str()) {
                continue;
            }
            if let Some((_, cmd)) = causes.iter().find(|(c, _)| c == cause) {
                f.fix = Some(format!("follows from {cause}; its fix comes first"));
                attributed[i] = Some(cmd.clone());
            }
        }
    }
    // Group by command, worst status first, then check order.
    let mut groups: Vec<(Status, usize, FixGroup)> = Vec::new();
    for (i, f) in report.checks.iter().enumerate() {
        if !is_problem(f) {
            continue;
        }
        let Some(cmd) = attributed[i]
            .clone()
            .or_else(|| f.fix.as_deref().map(command_of))
        else {
            continue;
        };
        match groups.iter_mut().find(|(_, _, g)| g.command == cmd) {
            Some((st, _, g)) => {
                *st = (*st).max(f.status);
                if !g.findings.contains(&f.id) {
                    g.findings.push(f.id.clone());
                }
            }
            None => groups.push((
                f.status,
                i,
                FixGroup {
                    command: cmd,
                    findings: vec![f.id.clone()],
                },
            )),
        }
    }
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // The same fix text twice: the later finding refers to the first.
    let mut seen: Vec<(String, String)> = Vec::new();
    for f in report.checks.iter_mut().filter(|f| is_problem(f)) {
        let Some(fix) = f.fix.clone() else { continue };
        match seen.iter().find(|(x, _)| *x == fix) {
            Some((_, first)) if *first != f.id => f.fix = Some(format!("as for {first} above")),
            Some(_) => {}
            None => seen.push((fix, f.id.clone())),
        }
    }
    let problems = report.checks.iter().filter(|f| is_problem(f)).count();
    report.fixes = groups.into_iter().map(|(_, _, g)| g).collect();
    report.next = report.fixes.first().map(|g| Next {
        command: g.command.clone(),
        addresses: g.findings.len(),
        of: problems,
        findings: g.findings.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Finding>) -> Report {
        Report {
            checks,
            ..Report::default()
        }
    }

    #[test]
    fn setup_fixes_group_moot_ones_follow_and_duplicates_refer_back() {
        let mut r = report(vec![
            Finding::fail("kernel-page-size", "16K").fix("boot the 4K kernel: sudo pigpu setup"),
            Finding::warn("kernel-headers", "none").fix("sudo apt install linux-headers-rpi-2712"),
            Finding::warn("pcie-link-degraded", "x1").fix("reseat the cable"),
            Finding::fail("driver-modules", "none").fix("build them: sudo pigpu setup"),
            Finding::warn("gpu-driver-bound", "unbound").fix("sudo modprobe nvidia"),
            Finding::warn("nouveau-bound", "not blacklisted").fix("blacklist it"),
            Finding::warn("other", "same").fix("blacklist it"),
            Finding::info("chatty", "fine").fix("nothing"),
        ]);
        plan(&mut r, Some(true));
        let next = r.next.clone().unwrap();
        assert_eq!(next.command, SETUP);
        assert_eq!(
            next.findings,
            vec![
                "kernel-page-size",
                "kernel-headers",
                "driver-modules",
                "gpu-driver-bound"
            ]
        );
        assert_eq!((next.addresses, next.of), (4, 7));
        let headers = r.find("kernel-headers").unwrap();
        assert!(headers
            .fix
            .as_deref()
            .unwrap()
            .contains("follows from kernel-page-size"));
        assert!(!r
            .checks
            .iter()
            .any(|f| f.fix.as_deref() == Some("sudo modprobe nvidia")));
        assert_eq!(
            r.find("other").unwrap().fix.as_deref(),
            Some("as for nouveau-bound above")
        );
        // Failures first: setup, then the warnings in check order.
        let cmds: Vec<&str> = r.fixes.iter().map(|g| g.command.as_str()).collect();
        assert_eq!(cmds, vec![SETUP, "reseat the cable", "blacklist it"]);
    }

    #[test]
    fn no_pi_fixes_off_a_pi() {
        let mut r = report(vec![
            Finding::warn("pcie-port", "off")
                .fix("echo 'dtparam=pciex1' | sudo tee -a /boot/firmware/config.txt"),
            Finding::fail("vulkan-icd-broken", "glvnd").fix("sudo apt install libglvnd0"),
        ]);
        plan(&mut r, Some(false));
        assert_eq!(r.find("pcie-port").unwrap().fix, None);
        let next = r.next.unwrap();
        assert_eq!(next.command, "sudo apt install libglvnd0");
        assert_eq!((next.addresses, next.of), (1, 2));
        let mut healthy = report(vec![Finding::ok("a", "fine")]);
        plan(&mut healthy, Some(true));
        assert!(healthy.next.is_none() && healthy.fixes.is_empty());
    }
}
