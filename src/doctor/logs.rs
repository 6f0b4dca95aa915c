//! Findings from text: a kernel log, or whatever a user pasted (dmesg, journalctl, `lspci -vv`,
//! `nvidia-smi`, `vulkaninfo`, llama-bench / llama.cpp output). The signature table does the
//! one-line matches; this file adds what needs structure: versions seen in different tools,
//! nvidia-smi's GPU table, lspci device blocks, PCIe link lines, Vulkan device lists and
//! generation speeds that reveal a CPU fallback.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

use super::signatures::{scan, SIGNATURES};
use super::text::{normalize, Line};
use super::{Finding, Status};

/// Below this many bytes of weights read per generated token-second, generation runs at CPU
/// speed: a Pi 5's LPDDR4X gives ~9–10 GB/s in practice (4.9 tok/s on a 1.87 GiB model), the
/// slowest supported NVIDIA cards several times more.
const CPU_BANDWIDTH_LIMIT: f64 = 20e9;
/// Only call a rate "CPU speed" below this many tokens/s: tiny models on a GPU are bounded by
/// per-token overhead, not bandwidth, and must not look like a CPU fallback.
const CPU_RATE_LIMIT: f64 = 60.0;
/// Bytes per parameter of a typical 4-bit quant (Q4_K_M ≈ 4.85 bits/weight), for logs that name
/// a model by parameter count only.
const Q4_BYTES_PER_PARAM: f64 = 0.61;
/// Evidence lines kept per finding.
const MAX_EVIDENCE: usize = 6;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("built-in regex compiles"))
}

/// A named text to analyse (`--log FILE` or the live kernel log).
pub struct Source<'a> {
    /// Where the text came from (a file path, `dmesg`), shown in evidence.
    pub label: &'a str,
    /// The log text.
    pub text: &'a str,
}

struct Lines<'a> {
    label: &'a str,
    lines: Vec<Line>,
}

impl Lines<'_> {
    fn evidence(&self, i: usize) -> String {
        let l = &self.lines[i];
        let mut raw = l.raw.clone();
        if raw.chars().count() > 300 {
            raw = raw.chars().take(300).collect::<String>() + "…";
        }
        if self.label.is_empty() {
            raw
        } else {
            format!("{}:{}: {}", self.label, l.number, raw)
        }
    }
}

/// Every log-based finding for these texts, merged by id (worst status wins).
pub fn analyze(sources: &[Source]) -> Vec<Finding> {
    let mut found = Vec::new();
    for src in sources {
        let lines = Lines {
            label: src.label,
            lines: normalize(src.text),
        };
        let before = found.len();
        signature_findings(&lines, &mut found);
        versions(&lines, &mut found);
        nvidia_smi(&lines, &mut found);
        pcie_links(&lines, &mut found);
        lspci(&lines, &mut found);
        vulkan_devices(&lines, &mut found);
        throughput(&lines, &mut found);
        page_size_lines(&lines, &mut found);
        if found.len() == before {
            let what = if src.text.trim().is_empty() {
                format!("{} is empty", display_label(src.label))
            } else {
                format!(
                    "nothing pigpu knows was found in {} ({} lines)",
                    display_label(src.label),
                    lines.lines.len()
                )
            };
            found.push(Finding::info("log-input", what));
        }
    }
    merge(found)
}

fn display_label(label: &str) -> &str {
    if label.is_empty() {
        "the log"
    } else {
        label
    }
}

/// Findings that only restate a more specific one.
const SUBSUMED: &[(&str, &[&str])] = &[(
    "gpu-init-failed",
    &[
        "driver-unpatched",
        "driver-proprietary",
        "gpu-no-gsp",
        "gpu-firmware-boot",
        "gpu-needs-reset",
        "driver-too-old",
        "gsp-firmware-missing",
        "kernel-page-size",
        "driver-version-mismatch",
        "pcie-device-dead",
        "module-symbols",
    ],
)];

/// One finding per id: worst status, its summary and fix, evidence from all (deduplicated),
/// at most [`MAX_EVIDENCE`] lines and then "… and N more". Linear in the evidence lines, and
/// merging merged findings again keeps the count right (the marker line is read back).
pub fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<(Finding, HashSet<String>, usize)> = Vec::new();
    for mut f in findings {
        let extra = take_more(&mut f.evidence);
        match out.iter_mut().find(|(o, _, _)| o.id == f.id) {
            Some((o, seen, more)) => {
                if f.status > o.status {
                    o.status = f.status;
                    o.summary = f.summary.clone();
                    if f.fix.is_some() {
                        o.fix = f.fix.clone();
                    }
                }
                if o.fix.is_none() {
                    o.fix = f.fix.clone();
                }
                *more += extra;
                for e in f.evidence {
                    if !seen.contains(&e) {
                        seen.insert(e.clone());
                        o.evidence.push(e);
                    }
                }
            }
            None => {
                let seen = f.evidence.iter().cloned().collect();
                out.push((f, seen, extra));
            }
        }
    }
    for (id, by) in SUBSUMED {
        let Some(generic) = out.iter().position(|(f, _, _)| f.id == *id) else {
            continue;
        };
        let covering: Vec<usize> = (0..out.len())
            .filter(|&i| by.contains(&out[i].0.id.as_str()) && out[i].0.status >= Status::Warn)
            .collect();
        let Some(&first) = covering.first() else {
            continue;
        };
        // The specific finding explains a failure the generic one saw, so it takes that
        // severity: the proprietary banner (a warning) beside `RmInitAdapter failed!` with any
        // code means the closed module failed, not just that it is loaded.
        let worst = covering.iter().map(|&i| out[i].0.status).max();
        let (g, _, g_more) = out[generic].clone();
        if worst.is_some_and(|w| g.status > w) {
            let (f, seen, more) = &mut out[first];
            f.status = g.status;
            f.summary = format!("{}; {}", f.summary, g.summary);
            for e in g.evidence {
                if seen.insert(e.clone()) {
                    f.evidence.push(e);
                }
            }
            *more += g_more;
        }
        out.remove(generic);
    }
    out.into_iter()
        .map(|(mut f, _, mut more)| {
            if f.evidence.len() > MAX_EVIDENCE {
                more += f.evidence.len() - MAX_EVIDENCE;
                f.evidence.truncate(MAX_EVIDENCE);
            }
            if more > 0 {
                f.evidence.push(format!("{MORE_PREFIX}{more}{MORE_SUFFIX}"));
            }
            if f.fix.as_deref() == Some("") {
                f.fix = None;
            }
            f
        })
        .collect()
}

const MORE_PREFIX: &str = "… and ";
const MORE_SUFFIX: &str = " more";

/// Removes a trailing "… and N more" line left by an earlier merge and returns N.
fn take_more(evidence: &mut Vec<String>) -> usize {
    let n = evidence.last().and_then(|l| {
        l.strip_prefix(MORE_PREFIX)?
            .strip_suffix(MORE_SUFFIX)?
            .parse::<usize>()
            .ok()
    });
    if n.is_some() {
        evidence.pop();
    }
    n.unwrap_or(0)
}

fn signature_findings(l: &Lines, out: &mut Vec<Finding>) {
    for hit in scan(&l.lines) {
        let s = &SIGNATURES[hit.signature];
        let mut f = Finding::new(s.finding, s.status, s.summary)
            .evidence_all(hit.lines.iter().map(|&i| l.evidence(i)));
        if !s.fix.is_empty() {
            f = f.fix(s.fix);
        }
        out.push(f);
    }
}

/// Kernel-module versions (NVRM banners), userspace versions (nvidia-smi) and firmware paths:
/// more than one version among them is a mismatch.
fn versions(l: &Lines, out: &mut Vec<Finding>) {
    static OPEN: OnceLock<Regex> = OnceLock::new();
    static CLOSED: OnceLock<Regex> = OnceLock::new();
    static SMI: OnceLock<Regex> = OnceLock::new();
    let open = re(
        &OPEN,
        r"NVIDIA UNIX Open Kernel Module for \S+\s+(\d+\.\d+(?:\.\d+)?)",
    );
    let closed = re(
        &CLOSED,
        r"NVIDIA UNIX (?:x86_64|aarch64|arm64|ARM64|ppc64le) Kernel Module\s+(\d+\.\d+(?:\.\d+)?)",
    );
    let smi = re(
        &SMI,
        r"NVIDIA-SMI (\d+\.\d+(?:\.\d+)?)\s+Driver Version: (\d+\.\d+(?:\.\d+)?)",
    );
    let mut module: Option<(String, usize, bool)> = None;
    let mut smi_seen: Option<(String, String, usize)> = None;
    for (i, line) in l.lines.iter().enumerate() {
        if let Some(c) = open.captures(&line.text) {
            module = Some((c[1].to_string(), i, true));
        } else if let Some(c) = closed.captures(&line.text) {
            module = Some((c[1].to_string(), i, false));
        }
        if let Some(c) = smi.captures(&line.text) {
            smi_seen = Some((c[1].to_string(), c[2].to_string(), i));
        }
    }
    if let Some((v, i, is_open)) = &module {
        let kind = if *is_open { "open" } else { "proprietary" };
        out.push(
            Finding::info(
                "driver-module",
                format!("the {kind} NVIDIA kernel module {v} was loaded"),
            )
            .evidence(l.evidence(*i)),
        );
    }
    if let Some((user, driver, i)) = &smi_seen {
        let mut evidence = vec![l.evidence(*i)];
        let mut versions = vec![("nvidia-smi (userspace)", user.clone())];
        versions.push(("kernel driver (nvidia-smi)", driver.clone()));
        if let Some((v, mi, _)) = &module {
            versions.push(("kernel module (NVRM banner)", v.clone()));
            evidence.insert(0, l.evidence(*mi));
        }
        if versions.iter().any(|(_, v)| v != &versions[0].1) {
            let list: Vec<String> = versions.iter().map(|(w, v)| format!("{w} {v}")).collect();
            out.push(
                Finding::fail(
                    "driver-version-mismatch",
                    format!("NVIDIA versions differ: {}", list.join(", ")),
                )
                .evidence_all(evidence)
                .fix("rebuild the modules for the installed userspace (or install the userspace of the module's version): sudo pigpu setup, then reboot"),
            );
        }
    }
}

/// nvidia-smi's table: which GPUs the driver runs.
fn nvidia_smi(l: &Lines, out: &mut Vec<Finding>) {
    static ROW: OnceLock<Regex> = OnceLock::new();
    static MEM: OnceLock<Regex> = OnceLock::new();
    let row = re(
        &ROW,
        r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off)\s+\|\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])",
    );
    let mem = re(&MEM, r"(\d+)MiB\s*/\s*(\d+)MiB");
    let mut gpus = Vec::new();
    let mut evidence = Vec::new();
    for (i, line) in l.lines.iter().enumerate() {
        if let Some(c) = row.captures(&line.text) {
            let mut desc = format!("{} ({})", c[2].trim(), &c[3]);
            if let Some(m) = l.lines.get(i + 1).and_then(|n| mem.captures(&n.text)) {
                desc.push_str(&format!(", {} / {} MiB used", &m[1], &m[2]));
            }
            gpus.push(desc);
            evidence.push(l.evidence(i));
        }
    }
    if !gpus.is_empty() {
        out.push(
            Finding::ok(
                "gpu-visible",
                format!(
                    "nvidia-smi sees {} GPU{}: {}",
                    gpus.len(),
                    if gpus.len() == 1 { "" } else { "s" },
                    gpus.join("; ")
                ),
            )
            .evidence_all(evidence),
        );
    }
}

/// `brcm-pcie …: link up, 5.0 GT/s PCIe x1` and `… limited by 2.5 GT/s PCIe x1 link` lines.
fn pcie_links(l: &Lines, out: &mut Vec<Finding>) {
    static UP: OnceLock<Regex> = OnceLock::new();
    static FORCED: OnceLock<Regex> = OnceLock::new();
    static LIMITED: OnceLock<Regex> = OnceLock::new();
    let up = re(&UP, r"brcm-pcie (\S+): link up, ([\d.]+) GT/s PCIe x(\d+)");
    let forced = re(&FORCED, r"brcm-pcie (\S+): Forcing gen (\d)");
    let limited = re(&LIMITED, r"limited by ([\d.]+) GT/s PCIe x(\d+) link");
    let mut forced_gen: Vec<(String, u32)> = Vec::new();
    for (i, line) in l.lines.iter().enumerate() {
        if let Some(c) = forced.captures(&line.text) {
            forced_gen.push((c[1].to_string(), c[2].parse().unwrap_or(0)));
        }
        if let Some(c) = up.captures(&line.text) {
            let ctrl = &c[1];
            // RP1, the Pi's own I/O chip, sits on 1000120000.pcie: not the GPU's port.
            if ctrl.starts_with("1000120000") {
                continue;
            }
            let speed: f64 = c[2].parse().unwrap_or(0.0);
            let gen = crate::sys::pci::generation(speed);
            let want = forced_gen
                .iter()
                .rev()
                .find(|(c, _)| c == ctrl)
                .map(|(_, g)| *g);
            let f = match want {
                Some(w) if gen < w => Finding::warn(
                    "pcie-link-degraded",
                    format!("the link trained at Gen {gen} ({speed} GT/s) although Gen {w} is forced"),
                )
                .fix("reseat or replace the cable/riser; if Gen 3 is unstable use 'dtparam=pciex1_gen=2'"),
                _ if gen <= 1 => Finding::warn(
                    "pcie-link-degraded",
                    format!("the link trained at Gen 1 ({speed} GT/s); the Pi 5 port runs Gen 2 by default"),
                )
                .fix("reseat or replace the cable/riser and check its power; if this started with a kernel update, pin a known-good 6.12.y kernel"),
                _ => Finding::ok(
                    "pcie-link",
                    format!("the external PCIe link is up at Gen {gen} ({speed} GT/s) x{}", &c[3]),
                ),
            };
            out.push(f.evidence(l.evidence(i)));
        }
        if let Some(c) = limited.captures(&line.text) {
            let speed: f64 = c[1].parse().unwrap_or(0.0);
            if crate::sys::pci::generation(speed) <= 1 {
                out.push(
                    Finding::warn(
                        "pcie-link-degraded",
                        format!("a device's bandwidth is limited by a {speed} GT/s (Gen 1) link"),
                    )
                    .evidence(l.evidence(i))
                    .fix("reseat or replace the cable/riser and check its power"),
                );
            }
        }
    }
}

/// `lspci -vv` blocks of NVIDIA display devices.
fn lspci(l: &Lines, out: &mut Vec<Finding>) {
    static HEADER: OnceLock<Regex> = OnceLock::new();
    static LNKSTA: OnceLock<Regex> = OnceLock::new();
    let header = re(
        &HEADER,
        r"^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7] ([^:]+): (.+)$",
    );
    let lnksta = re(&LNKSTA, r"LnkSta:\s*Speed ([\d.]+)GT/s");
    let mut i = 0;
    while i < l.lines.len() {
        let Some(h) = header.captures(&l.lines[i].text) else {
            i += 1;
            continue;
        };
        let class = h[1].to_lowercase();
        let is_gpu = h[2].contains("NVIDIA")
            && (class.contains("vga") || class.contains("3d") || class.contains("display"));
        let start = i;
        i += 1;
        let mut problems: Vec<Finding> = Vec::new();
        let mut enabled = false;
        let mut regions = 0;
        while i < l.lines.len() && !header.is_match(&l.lines[i].text) && !l.lines[i].kernel {
            let t = &l.lines[i].text;
            if is_gpu {
                if t.starts_with("Control:") {
                    if t.contains("Mem-") || t.contains("BusMaster-") {
                        problems.push(
                            Finding::warn(
                                "pcie-device-dead",
                                "lspci: the NVIDIA GPU is not enabled (memory decoding or bus mastering off): no driver took it, or it is dead",
                            )
                            .evidence(l.evidence(i))
                            .fix("see the driver findings (is nvidia loaded and bound?); if the driver is fine, check the GPU's power"),
                        );
                    } else if t.contains("Mem+") {
                        enabled = true;
                    }
                }
                if t.starts_with("Region") {
                    regions += 1;
                    if t.contains("<unassigned>") || t.contains("<ignored>") {
                        problems.push(
                            Finding::fail(
                                "pcie-bar-space",
                                "lspci: a BAR of the NVIDIA GPU got no address",
                            )
                            .evidence(l.evidence(i))
                            .fix(
                                super::signatures::SIGNATURES
                                    .iter()
                                    .find(|s| s.finding == "pcie-bar-space")
                                    .map(|s| s.fix)
                                    .unwrap_or_default(),
                            ),
                        );
                    } else if t.contains("[disabled]") {
                        problems.push(
                            Finding::warn(
                                "pcie-device-dead",
                                "lspci: a memory region of the NVIDIA GPU is disabled: no driver enabled it, or it is dead",
                            )
                            .evidence(l.evidence(i))
                            .fix("see the driver findings (is nvidia loaded and bound?); if the driver is fine, check the GPU's power"),
                        );
                    }
                }
                if let Some(c) = lnksta.captures(t) {
                    let speed: f64 = c[1].parse().unwrap_or(0.0);
                    if crate::sys::pci::generation(speed) <= 1 {
                        problems.push(
                            Finding::warn(
                                "pcie-link-degraded",
                                format!("lspci: the GPU's link runs at {speed} GT/s (Gen 1)"),
                            )
                            .evidence(l.evidence(i))
                            .fix("reseat or replace the cable/riser and check its power; if you forced Gen 3, try 'dtparam=pciex1_gen=2'"),
                        );
                    }
                }
            }
            i += 1;
        }
        if is_gpu {
            if problems.is_empty() && enabled {
                out.push(
                    Finding::ok(
                        "pcie-gpu",
                        format!(
                            "lspci: {} is enabled with {regions} memory region(s) assigned",
                            h[2].trim()
                        ),
                    )
                    .evidence(l.evidence(start)),
                );
            }
            out.extend(problems);
        }
    }
}

/// Vulkan device lists from `vulkaninfo` and llama.cpp's `ggml_vulkan:` lines.
fn vulkan_devices(l: &Lines, out: &mut Vec<Finding>) {
    static GGML: OnceLock<Regex> = OnceLock::new();
    static VKINFO: OnceLock<Regex> = OnceLock::new();
    static USING: OnceLock<Regex> = OnceLock::new();
    let ggml = re(&GGML, r"ggml_vulkan: (\d+) = ([^|]+?)\s*\|");
    let vkinfo = re(&VKINFO, r"^deviceName\s*=\s*(.+)$");
    let using = re(&USING, r"using device (Vulkan\d+) \(([^)]+)\)");
    let mut devices: Vec<(String, usize)> = Vec::new();
    for (i, line) in l.lines.iter().enumerate() {
        let name = ggml
            .captures(&line.text)
            .map(|c| c[2].to_string())
            .or_else(|| vkinfo.captures(&line.text).map(|c| c[1].trim().to_string()));
        if let Some(n) = name {
            if !devices.iter().any(|(d, _)| *d == n) {
                devices.push((n, i));
            }
        }
        if let Some(c) = using.captures(&line.text) {
            if !is_real_gpu(&c[2]) {
                out.push(
                    Finding::warn(
                        "cpu-fallback",
                        format!("llama.cpp runs on {} ({}), not on a real GPU", &c[1], &c[2]),
                    )
                    .evidence(l.evidence(i))
                    .fix("select the NVIDIA device (GGML_VK_VISIBLE_DEVICES=<its index>) and check the driver findings"),
                );
            }
        }
    }
    if devices.is_empty() {
        return;
    }
    let evidence: Vec<String> = devices.iter().map(|(_, i)| l.evidence(*i)).collect();
    let names: Vec<&str> = devices.iter().map(|(n, _)| n.as_str()).collect();
    if !names.iter().any(|n| is_real_gpu(n)) {
        out.push(
            Finding::fail(
                "vulkan-no-gpu",
                format!(
                    "Vulkan lists only {}: no NVIDIA (or other discrete) GPU is visible to Vulkan",
                    names.join(", ")
                ),
            )
            .evidence_all(evidence)
            .fix("install the NVIDIA userspace (it provides /usr/share/vulkan/icd.d/nvidia_icd.json) and check the driver findings: sudo pigpu setup"),
        );
    } else if names.iter().any(|n| is_pi_igpu(n)) {
        out.push(
            Finding::info(
                "vulkan-devices",
                format!(
                    "Vulkan devices: {}; the V3D one is the Pi's own GPU — never pick it for models",
                    names.join(", ")
                ),
            )
            .evidence_all(evidence),
        );
    } else {
        out.push(
            Finding::ok(
                "vulkan-devices",
                format!("Vulkan devices: {}", names.join(", ")),
            )
            .evidence_all(evidence),
        );
    }
}

fn is_pi_igpu(name: &str) -> bool {
    name.contains("V3D")
}

fn is_cpu_device(name: &str) -> bool {
    let n = name.to_lowercase();
    n.contains("llvmpipe") || n.contains("lavapipe") || n.contains("swiftshader")
}

fn is_real_gpu(name: &str) -> bool {
    !is_pi_igpu(name) && !is_cpu_device(name)
}

fn size_bytes(s: &str) -> Option<f64> {
    let mut w = s.split_whitespace();
    let v: f64 = w.next()?.parse().ok()?;
    let mult = match w.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(v * mult)
}

/// Generation speed: llama-bench `tg` rows, `eval rate:` (ollama), `eval time … tokens per
/// second` (llama.cpp) and `N tokens/s` table cells, judged by how many bytes of weights per
/// second they imply.
fn throughput(l: &Lines, out: &mut Vec<Finding>) {
    static RATE: OnceLock<Regex> = OnceLock::new();
    static PARAMS: OnceLock<Regex> = OnceLock::new();
    let rate_re = re(
        &RATE,
        r"(?i)(?:eval rate:\s*([\d.]+)\s*tokens?/s|eval time\s*=.*?([\d.]+) tokens per second|\|\s*([\d.]+)\s*tokens?/s\s*\|)",
    );
    // "llama3.2:3b", "Qwen2.5-14B-Instruct", "tinyllama-1.1b": a parameter count in billions.
    let params_re = re(&PARAMS, r"(?i)[:\-_ ](\d+(?:\.\d+)?)b\b");
    let mut header: Option<Vec<String>> = None;
    let mut model_hint: Option<f64> = None;
    for (i, line) in l.lines.iter().enumerate() {
        let t = &line.text;
        let cells: Vec<String> = if t.starts_with('|') {
            t.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let col = |h: &Vec<String>, name: &str| h.iter().position(|c| c == name);
        if cells.iter().any(|c| c == "model") && cells.iter().any(|c| c == "t/s") {
            header = Some(cells);
            continue;
        }
        if !t.starts_with('|') {
            header = None;
        }
        if let (Some(h), false) = (&header, cells.is_empty()) {
            let get = |name: &str| col(h, name).and_then(|k| cells.get(k)).map(String::as_str);
            let (Some(test), Some(ts)) = (get("test"), get("t/s")) else {
                continue;
            };
            let Some(rate) = ts
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let backend = get("backend").unwrap_or("");
            let size = get("size").and_then(size_bytes);
            if !test.starts_with("tg") {
                continue;
            }
            judge(l, i, rate, size, backend, test, out);
            continue;
        }
        if let Some(m) = params_re.captures(t).and_then(|c| c[1].parse::<f64>().ok()) {
            if m > 0.05 && m < 1000.0 {
                model_hint = Some(m);
            }
        }
        if t.to_lowercase().contains("prompt eval") {
            continue;
        }
        if let Some(c) = rate_re.captures(t) {
            let rate = c
                .iter()
                .skip(1)
                .flatten()
                .next()
                .and_then(|m| m.as_str().parse::<f64>().ok());
            let Some(rate) = rate else { continue };
            let on_cpu = cells.iter().any(|c| c == "CPU");
            let size = model_hint.map(|p| p * 1e9 * Q4_BYTES_PER_PARAM);
            judge(
                l,
                i,
                rate,
                size,
                if on_cpu { "CPU" } else { "" },
                "generation",
                out,
            );
        }
    }
}

fn judge(
    l: &Lines,
    i: usize,
    rate: f64,
    size: Option<f64>,
    backend: &str,
    test: &str,
    out: &mut Vec<Finding>,
) {
    let fix = "make sure the model runs on the NVIDIA GPU: build/run with the Vulkan backend, offload all layers (-ngl 99), select the NVIDIA device (not V3D/llvmpipe), and check the driver findings";
    let backends: Vec<&str> = backend.split(',').map(str::trim).collect();
    if backend.is_empty() && size.is_none() {
        return;
    }
    if !backend.is_empty() && backends.iter().all(|b| *b == "CPU" || *b == "BLAS") {
        out.push(
            Finding::warn(
                "cpu-fallback",
                format!("{test} at {rate} tok/s on the CPU backend: the GPU is not used"),
            )
            .evidence(l.evidence(i))
            .fix(fix),
        );
        return;
    }
    let Some(size) = size else { return };
    let bw = rate * size;
    if bw < CPU_BANDWIDTH_LIMIT && rate < CPU_RATE_LIMIT {
        out.push(
            Finding::warn(
                "cpu-fallback",
                format!(
                    "{test} at {rate} tok/s reads only ≈{:.1} GB/s of weights: that is CPU speed, the GPU is probably not used",
                    bw / 1e9
                ),
            )
            .evidence(l.evidence(i))
            .fix(fix),
        );
    } else {
        out.push(
            Finding::ok(
                "gpu-inference",
                format!(
                    "{test} at {rate} tok/s{} (≈{:.0} GB/s of weights): GPU speed",
                    if backend.is_empty() {
                        String::new()
                    } else {
                        format!(" on {backend}")
                    },
                    bw / 1e9
                ),
            )
            .evidence(l.evidence(i)),
        );
    }
}

/// `getconf PAGESIZE` answers and kernel releases (`uname -r`, `Linux version …`).
fn page_size_lines(l: &Lines, out: &mut Vec<Finding>) {
    static RELEASE: OnceLock<Regex> = OnceLock::new();
    let release = re(
        &RELEASE,
        r"(?:^Linux version |^Linux \S+ |^)(\d+\.\d+\.\d+\S*-rpi-(?:2712|v8))\b",
    );
    let mentions_nvidia = l
        .lines
        .iter()
        .any(|x| x.text.contains("NVRM") || x.text.contains("nvidia"));
    for (i, line) in l.lines.iter().enumerate() {
        if i > 0 && l.lines[i - 1].text.contains("getconf PAGESIZE") {
            match line.text.trim() {
                "16384" | "65536" => out.push(
                    Finding::fail(
                        "kernel-page-size",
                        format!(
                            "getconf PAGESIZE = {}: the NVIDIA driver needs 4096",
                            line.text.trim()
                        ),
                    )
                    .evidence_all([l.evidence(i - 1), l.evidence(i)])
                    .fix(SIGNATURES[0].fix),
                ),
                "4096" => out.push(
                    Finding::ok("kernel-page-size", "getconf PAGESIZE = 4096")
                        .evidence(l.evidence(i)),
                ),
                _ => {}
            }
        }
        if let Some(c) = release.captures(&line.text) {
            let rel = &c[1];
            if rel.ends_with("-rpi-2712") {
                let f = if mentions_nvidia {
                    Finding::warn(
                        "kernel-page-size",
                        format!("kernel {rel} is the 16K-page flavour; the NVIDIA driver needs the 4K one (-rpi-v8)"),
                    )
                    .fix(SIGNATURES[0].fix)
                } else {
                    Finding::info(
                        "kernel-page-size",
                        format!("kernel {rel} uses 16K pages: fine for AMD GPUs, NVIDIA needs kernel8.img (4K)"),
                    )
                };
                out.push(f.evidence(l.evidence(i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Vec<Finding> {
        analyze(&[Source { label: "t", text }])
    }

    #[test]
    fn nvidia_smi_versions_must_agree() {
        let text = "NVRM: loading NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build\n| NVIDIA-SMI 580.82.07              Driver Version: 580.95.05      CUDA Version: 13.0     |\n";
        let f = run(text);
        let m = f
            .iter()
            .find(|f| f.id == "driver-version-mismatch")
            .expect("mismatch");
        assert_eq!(m.status, Status::Fail);
        assert_eq!(m.evidence.len(), 2);
    }

    #[test]
    fn tiny_models_on_a_gpu_are_not_a_cpu_fallback() {
        let table = "| model | size | params | backend | ngl | test | t/s |\n| --- | ---: | ---: | --- | --: | ---: | ---: |\n| llama 135M Q4_1 | 80.00 MiB | 0.13 B | Vulkan | 99 | tg128 | 150.00 ± 1.00 |\n| llama 1B Q4_K - Medium | 636.18 MiB | 1.10 B | Vulkan | 99 | tg128 | 15.00 ± 1.00 |\n";
        let f = run(table);
        assert_eq!(
            f.iter()
                .find(|f| f.id == "cpu-fallback")
                .map(|f| f.evidence.len()),
            Some(1)
        );
        assert!(f.iter().any(|f| f.id == "gpu-inference"));
    }

    #[test]
    fn empty_and_unknown_text_say_so() {
        let f = run("");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "log-input");
        assert!(f[0].summary.contains("empty"));
        let f = run("hello\nworld\n");
        assert_eq!(f[0].status, Status::Info);
    }

    #[test]
    fn lspci_unassigned_and_gen1() {
        let text = "01:00.0 VGA compatible controller: NVIDIA Corporation GA104 [GeForce RTX 3070] (rev a1)\n\tControl: I/O- Mem+ BusMaster+\n\tRegion 0: Memory at 1b00000000 (32-bit, non-prefetchable) [size=16M]\n\tRegion 1: Memory at <unassigned> (64-bit, prefetchable)\n\t\tLnkSta:\tSpeed 2.5GT/s (downgraded), Width x1 (downgraded)\n";
        let f = run(text);
        let ids: Vec<_> = f.iter().map(|f| (f.id.as_str(), f.status)).collect();
        assert!(ids.contains(&("pcie-bar-space", Status::Fail)), "{ids:?}");
        assert!(
            ids.contains(&("pcie-link-degraded", Status::Warn)),
            "{ids:?}"
        );
    }
}
