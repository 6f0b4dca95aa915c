//! `pigpu doctor`: checks the live system (or a root directory, or saved logs) and prints what
//! is wrong with the Pi + NVIDIA setup and how to fix it. Exit 0: nothing failed; 1: something
//! failed; 2: doctor could not run (an input could not be read).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::doctor::logs::{self, Source};
use crate::doctor::{self, report, Finding, Patient, Report};
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
    /// Print `{"checks": [{"id","status","summary","evidence","fix"}], "fixes": [...], "next":
    /// {"command","addresses","of","findings"}}` instead of the report.
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
fn vulkan_devices() -> Result<Vec<doctor::patient::VulkanDevice>, String> {
    let tuning = super::engine_tuning().map_err(|e| e.to_string())?.vulkan;
    crate::engine::vulkan::list_devices_with(tuning.device.as_deref(), &tuning.vulkan_env)
        .map(|list| {
            list.into_iter()
                .map(|d| doctor::patient::VulkanDevice {
                    name: d.name,
                    kind: format!("{:?}", d.kind).to_lowercase(),
                    problem: d.problem,
                })
                .collect()
        })
        .map_err(|e| format!("{e:#}"))
}

/// The most of one `--log` input doctor reads: the end of a bigger file, and an error for more
/// than this on stdin (which could be endless, like `/dev/zero`).
const LOG_CAP: u64 = 32 << 20;
/// How much of the start of an input the text check looks at.
const SNIFF: usize = 64 << 10;

/// A `--log` input. Regular files and stdin only (a FIFO path or a device is an error); input
/// that is not text is reported as such after its first 64 KiB, so binary data is neither
/// analysed slowly nor held in memory.
fn read_log(path: &std::path::Path) -> Result<Input, String> {
    let (bytes, cut) = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        let mut stdin = std::io::stdin().lock();
        (&mut stdin)
            .take(SNIFF as u64)
            .read_to_end(&mut b)
            .map_err(|e| e.to_string())?;
        if let Err(why) = check_text(&b) {
            return Ok(Input::Binary(why));
        }
        (&mut stdin)
            .take(LOG_CAP + 1 - b.len() as u64)
            .read_to_end(&mut b)
            .map_err(|e| e.to_string())?;
        if b.len() as u64 > LOG_CAP {
            return Err(format!(
                "more than {} MiB on stdin; save it to a file and pass --log FILE (its last {} MiB are read)",
                LOG_CAP >> 20,
                LOG_CAP >> 20
            ));
        }
        (b, None)
    } else {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (b, cut) =
            crate::sys::root::read_regular_tail(path, LOG_CAP).map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => {
                    "not a regular file (pass a saved log, or - for stdin)".to_string()
                }
                _ => e.to_string(),
            })?;
        if let Err(why) = check_text(&b[..b.len().min(SNIFF)]) {
            return Ok(Input::Binary(why));
        }
        (b, cut.then_some(size))
    };
    Ok(Input::Text(
        String::from_utf8_lossy(&bytes).into_owned(),
        cut,
    ))
}

/// A `--log` input: its text (and the full size when only the end was read), or why it is not
/// text.
enum Input {
    Text(String, Option<u64>),
    Binary(String),
}

/// Refuses data that is not text: more than 1 % NUL or control bytes (other than tab, newline,
/// carriage return, escape, backspace and form feed).
fn check_text(head: &[u8]) -> Result<(), String> {
    let odd = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x1b | 0x08 | 0x0c))
        .count();
    if odd * 100 > head.len() {
        return Err(format!(
            "not text: {odd} of its first {} bytes are NUL or control bytes (a binary file?)",
            head.len()
        ));
    }
    Ok(())
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let known = doctor::checks::ids();
    for c in &args.checks {
        if !known.contains(&c.as_str()) {
            anyhow::bail!("unknown check {c:?}: expected one of {}", known.join(", "));
        }
    }
    let mut unreadable = Vec::new();
    let (mut report, title, on_pi) = if !args.logs.is_empty() {
        let mut texts = Vec::new();
        let mut findings = Vec::new();
        for path in &args.logs {
            let label = path.display().to_string();
            match read_log(path) {
                Ok(Input::Binary(why)) => findings.push(Finding::info(
                    "log-input",
                    format!("{label} was not analysed: {why}"),
                )),
                Ok(Input::Text(text, cut)) => {
                    if let Some(total) = cut {
                        findings.push(Finding::info(
                            "log-input",
                            format!(
                                "{label} is {} MiB: only its last {} MiB were read",
                                total >> 20,
                                LOG_CAP >> 20
                            ),
                        ));
                    }
                    texts.push((label, text));
                }
                Err(e) => {
                    findings.push(
                        Finding::fail("log-input", format!("cannot read {label}: {e}"))
                            .fix("pass a readable text file, or - for stdin"),
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
                ..Report::default()
            },
            format!("saved output {}", names.join(", ")),
            // Saved output from a machine doctor cannot see: Pi fixes stay.
            None,
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
        let mut host = Patient::new(root);
        host.vulkan_env = super::vulkan_env();
        if host.is_live() {
            // What Vulkan really enumerates, from the engine itself; other roots are not this
            // machine, so there only the loader and ICD files are checked.
            host.vulkan_lister = Some(vulkan_devices);
        }
        let r = doctor::diagnose_system(&host, &args.checks);
        (
            Report {
                checks: logs::merge(r.checks),
                ..Report::default()
            },
            title,
            Some(host.platform().is_raspberry_pi()),
        )
    };
    doctor::fixes::plan(&mut report, on_pi);

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
