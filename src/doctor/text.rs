//! Turns pasted logs into clean logical lines: CRLF and ANSI colour codes removed, dmesg /
//! journalctl / syslog prefixes and `>` quote marks stripped, and the kernel's indented
//! continuation lines (`NVRM:` messages printed over several lines) joined back into one.
//! Matching then works the same on `dmesg`, `dmesg -T`, `journalctl -k` and copy-pasted issues.

use std::sync::OnceLock;

use regex::Regex;

/// One logical line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The message with prefixes stripped (what signatures match against).
    pub text: String,
    /// The line(s) as they appeared (colour and CR removed), for evidence.
    pub raw: String,
    /// 1-based number of the first physical line.
    pub number: usize,
    /// It carried a kernel-log prefix (timestamp, `kernel:`), so indented lines after it continue it.
    pub kernel: bool,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("built-in regex compiles"))
}

/// Removes ANSI escape sequences (CSI and OSC) and other control characters except tab.
fn strip_ansi(s: &str) -> String {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    let no_esc = re(
        &ANSI,
        r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]",
    )
    .replace_all(s, "");
    no_esc
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect()
}

/// Strips the prefixes a log line can carry; returns the message and whether it looked like a
/// kernel-log record.
fn strip_prefixes(line: &str) -> (String, bool) {
    static QUOTE: OnceLock<Regex> = OnceLock::new();
    static STAMP: OnceLock<Regex> = OnceLock::new();
    static STAMP_T: OnceLock<Regex> = OnceLock::new();
    static FACILITY: OnceLock<Regex> = OnceLock::new();
    static LEVEL: OnceLock<Regex> = OnceLock::new();
    static JOURNAL: OnceLock<Regex> = OnceLock::new();
    static JOURNAL_ISO: OnceLock<Regex> = OnceLock::new();
    static HOST_KERNEL: OnceLock<Regex> = OnceLock::new();
    let patterns = [
        (re(&QUOTE, r"^\s*(?:>\s?)+"), false),
        (re(&STAMP, r"^\s*\[\s*\d+\.\d+\]\s?"), true),
        (
            re(
                &STAMP_T,
                r"^\s*\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]\s?",
            ),
            true,
        ),
        (
            re(
                &FACILITY,
                r"^\s*(?:kern|user|daemon|syslog)\s*:\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s?",
            ),
            true,
        ),
        (re(&LEVEL, r"^<\d>"), true),
        (
            re(
                &JOURNAL,
                r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ [\w.\-/@]+(?:\[\d+\])?:\s?",
            ),
            true,
        ),
        (
            re(
                &JOURNAL_ISO,
                r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? \S+ [\w.\-/@]+(?:\[\d+\])?:\s?",
            ),
            true,
        ),
        (re(&HOST_KERNEL, r"^(?:\S+ )?kernel:\s?"), true),
    ];
    let mut text = line.to_string();
    let mut kernel = false;
    // Prefixes stack (`[ 5.1] host kernel: …`): strip until nothing changes.
    loop {
        let before = text.len();
        for (r, is_kernel) in &patterns {
            if let Some(m) = r.find(&text) {
                if m.end() > 0 {
                    kernel |= *is_kernel;
                    text = text[m.end()..].to_string();
                }
            }
        }
        if text.len() == before {
            break;
        }
    }
    (text.trim_end().to_string(), kernel)
}

/// Splits and cleans a pasted log into logical lines.
pub fn normalize(input: &str) -> Vec<Line> {
    let cleaned = input.replace("\r\n", "\n").replace('\r', "\n");
    let mut out: Vec<Line> = Vec::new();
    for (i, physical) in cleaned.split('\n').enumerate() {
        let raw = strip_ansi(physical);
        if raw.trim().is_empty() {
            continue;
        }
        // Quote marks (`> ` from mail or issue replies) come off before judging indentation.
        let trimmed = raw.trim_start();
        let unquoted: &str = if trimmed.starts_with('>') {
            let rest = trimmed.trim_start_matches('>');
            rest.strip_prefix(' ').unwrap_or(rest)
        } else {
            &raw
        };
        let indented = unquoted.starts_with(' ') || unquoted.starts_with('\t');
        let (text, kernel) = strip_prefixes(&raw);
        // A kernel message printed over several lines continues with indented text (and for NVRM
        // messages a repeated `NVRM:`); glue it back so a signature split over lines still matches.
        if indented && !kernel {
            if let Some(prev) = out.last_mut().filter(|p| p.kernel) {
                let cont = text.trim_start();
                let cont = cont.strip_prefix("NVRM:").unwrap_or(cont).trim_start();
                prev.text.push(' ');
                prev.text.push_str(cont);
                prev.raw.push_str(" ⏎ ");
                prev.raw.push_str(raw.trim());
                continue;
            }
        }
        out.push(Line {
            text: text.trim_start().to_string(),
            raw: raw.trim().to_string(),
            number: i + 1,
            kernel: kernel || text.trim_start().starts_with("NVRM:"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_every_common_log_format_are_stripped() {
        let msg = "NVRM: RmInitAdapter failed! (0x62:0xffff:1863)";
        for line in [
            format!("[    5.755325] {msg}"),
            format!("[Sun Nov 29 00:02:46 2026] {msg}"),
            format!("Nov 26 16:52:14 cm5 kernel: {msg}"),
            format!("2025-11-26T16:52:14+0000 cm5 kernel: {msg}"),
            format!("kern  :err   : [    5.755325] {msg}"),
            format!("kernel: {msg}"),
            format!("> [    5.755325] {msg}"),
            format!("[    5.755325] pi5 kernel: {msg}"),
        ] {
            let (t, k) = strip_prefixes(&line);
            assert_eq!(t, msg, "from {line:?}");
            assert!(k, "{line:?} is a kernel record");
        }
        let (t, k) = strip_prefixes("| 0  NVIDIA RTX A4000   Off |");
        assert_eq!(t, "| 0  NVIDIA RTX A4000   Off |");
        assert!(!k);
    }

    #[test]
    fn colour_crlf_and_continuations() {
        let log = "\x1b[32m[    1.0]\x1b[0m NVRM: The NVIDIA GPU 0000:09:00.0 (PCI ID: 10de:1d01)\r\n             NVRM: installed in this system is not supported by open\r\n             NVRM: nvidia.ko because it does not include the required GPU\r\n             NVRM: System Processor (GSP).\r\n[    1.1] next\r\n";
        let lines = normalize(log);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0]
                .text
                .contains("does not include the required GPU System Processor (GSP)"),
            "{}",
            lines[0].text
        );
        assert_eq!(lines[1].text, "next");
        assert_eq!(lines[1].number, 5);
        assert!(!lines[0].raw.contains('\x1b'));
    }

    #[test]
    fn quoted_continuations_still_join() {
        let log = "> kernel: NVRM: The NVIDIA GPU 0000:09:00.0\n>              NVRM: installed in this system is not supported by open\n> kernel: next\n";
        let lines = normalize(log);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].text.ends_with("is not supported by open"));
    }

    #[test]
    fn indented_tool_output_is_not_glued() {
        let lspci = "01:00.0 VGA compatible controller: NVIDIA Corporation GA104GL\n  Control: I/O+ Mem+ BusMaster+\n  Region 0: Memory at 20000000";
        assert_eq!(normalize(lspci).len(), 3);
    }

    #[test]
    fn garbage_does_not_panic() {
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = normalize(&s);
        assert!(normalize("").is_empty());
    }
}
