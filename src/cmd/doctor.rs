//! `pigpu doctor`: checks the live system (or a root directory, or saved logs) and prints what
//! is wrong with the Pi + NVIDIA setup and how to fix it. Exit 0: nothing failed; 1: something
//! failed; 2: doctor could not run (an input could not be read).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::doctor::logs::{self, Source};
use crate::doctor::{self, report, Finding, Host, Report};
use crate::sys::Root;

/// Arguments of `pigpu doctor`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pigpu doctor                       check this machine
  sudo dmesg > k.txt; pigpu doctor --log k.txt
  nvidia-smi 2>&1 | pigpu doctor --log -
  pigpu doctor --json --check pcie --check driver
  pigpu doctor --root /mnt/pi-image  check a system mounted elsewhere

Each finding: [✓] ok  [i] info  [!] warning  [✗] failure  [-] skipped.
Exit codes: 0 nothing failed, 1 something failed, 2 doctor could not run.
Every check and finding id is explained in docs/doctor.md.")]
pub struct Args {
    /// Print `{"checks": [{"id","status","summary","evidence","fix"}]}` instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Examine saved output (dmesg, journalctl, lspci -vv, nvidia-smi, vulkaninfo, llama-bench,
    /// llama.cpp) instead of this system; repeatable, or several files after one flag; `-` reads
    /// stdin.
    #[arg(long = "log", value_name = "FILE", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Treat DIR as `/` (a mounted image, a copy of another system's files).
    #[arg(long, value_name = "DIR", conflicts_with = "logs")]
    pub root: Option<PathBuf>,
    /// Run only these checks (platform, kernel, boot-config, pcie, driver, device-nodes,
    /// kernel-log, vulkan, power); repeatable.
    #[arg(long = "check", value_name = "ID", conflicts_with = "logs")]
    pub checks: Vec<String>,
}

/// The Vulkan engine's device list, as doctor shows it.
fn vulkan_devices() -> Result<Vec<doctor::host::VulkanDevice>, String> {
    crate::engine::vulkan::list_devices()
        .map(|list| {
            list.into_iter()
                .map(|d| doctor::host::VulkanDevice {
                    name: d.name,
                    kind: format!("{:?}", d.kind).to_lowercase(),
                    problem: d.problem,
                })
                .collect()
        })
        .map_err(|e| format!("{e:#}"))
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let known = doctor::checks::ids();
    for c in &args.checks {
        if !known.contains(&c.as_str()) {
            anyhow::bail!("unknown check {c:?}: expected one of {}", known.join(", "));
        }
    }
    let mut unreadable = Vec::new();
    let (report, title) = if !args.logs.is_empty() {
        let mut texts = Vec::new();
        let mut findings = Vec::new();
        for path in &args.logs {
            let label = path.display().to_string();
            let read = if label == "-" {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b).map(|_| b)
            } else {
                std::fs::read(path)
            };
            match read {
                Ok(bytes) => texts.push((label, String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) => {
                    findings.push(
                        Finding::fail("log-input", format!("cannot read {label}: {e}"))
                            .fix("pass a readable file, or - for stdin"),
                    );
                    unreadable.push(format!("{label}: {e}"));
                }
            }
        }
        let sources: Vec<Source> = texts
            .iter()
            .map(|(l, t)| Source { label: l, text: t })
            .collect();
        findings.extend(logs::analyze(&sources));
        let names: Vec<String> = args.logs.iter().map(|p| p.display().to_string()).collect();
        (
            Report {
                checks: logs::merge(findings),
            },
            format!("saved output {}", names.join(", ")),
        )
    } else {
        let root = match &args.root {
            Some(dir) => {
                let meta = std::fs::metadata(dir).with_context(|| {
                    format!("--root {}: cannot use it as a root", dir.display())
                })?;
                anyhow::ensure!(meta.is_dir(), "--root {}: not a directory", dir.display());
                Root::new(dir)
            }
            None => Root::live(),
        };
        let title = if root.is_live() {
            "this system".to_string()
        } else {
            format!("the system under {}", root.dir().display())
        };
        let mut host = Host::new(root);
        if host.is_live() {
            // What Vulkan really enumerates, from the engine itself; other roots are not this
            // machine, so there only the loader and ICD files are checked.
            host.vulkan_lister = Some(vulkan_devices);
        }
        let r = doctor::diagnose_system(&host, &args.checks);
        (
            Report {
                checks: logs::merge(r.checks),
            },
            title,
        )
    };

    let text = if args.json {
        report::json(&report) + "\n"
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        report::human(&report, &title, colour)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the report")?;
    if !unreadable.is_empty() {
        anyhow::bail!("could not read {}", unreadable.join("; "));
    }
    Ok(if report.has_failures() {
        Outcome::Problems
    } else {
        Outcome::Ok
    })
}
