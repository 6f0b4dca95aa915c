//! The Raspberry Pi firmware's `config.txt`: reading what applies to a Pi 5 / CM5 and editing
//! the one block pigpu owns, as pure `&str → String` functions (no I/O), so every edit can be
//! tested on real-world files and is idempotent.
//!
//! pigpu never rewrites lines it does not own. Its settings live in one marked block at the end
//! of the file (the firmware applies the last value of a repeated setting, so the end is where
//! they take effect), wrapped in `[all]` … `[pi5]` … `[all]` so that filters above it cannot
//! narrow it and lines appended after it by hand are not caught in its `[pi5]` section.

/// First line of pigpu's block.
const BEGIN: &str =
    "# >>> pigpu setup: begin (managed by `pigpu setup`; `pigpu setup --undo` removes it)";
/// Last line of pigpu's block.
const END: &str = "# <<< pigpu setup: end";

use crate::platform::config_txt;
/// The one board type ([`crate::platform::Board`]), re-exported for the plan.
pub use crate::platform::Board;

/// What the file says for the settings pigpu cares about, for one board: a view over the one
/// parser, [`crate::platform::config_txt`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Effective {
    /// The last `kernel=` that applies; `None` means the board's default image.
    pub kernel: Option<String>,
    /// `dtparam=pciex1` (or `pciex1=on`) applies.
    pub pciex1: bool,
    /// `dtparam=pciex1_gen=N` that applies last.
    pub pciex1_gen: Option<u32>,
    /// Settings pigpu cares about found under filters it does not evaluate, as `line N: text`.
    pub uncertain: Vec<String>,
}

impl Effective {
    /// The kernel image that boots.
    pub fn kernel_image(&self, board: Board) -> String {
        self.kernel
            .clone()
            .unwrap_or_else(|| board.default_kernel().to_string())
    }
}

/// Reads the settings that apply to `board` (including pigpu's own block).
pub fn effective(text: &str, board: Board) -> Effective {
    let c = config_txt::ConfigTxt::new("config.txt", text, board);
    let mut uncertain: Vec<&config_txt::Setting> = c.uncertain("kernel");
    uncertain.extend(c.uncertain("pciex1"));
    uncertain.sort_by_key(|s| s.line);
    uncertain.dedup_by_key(|s| s.line);
    Effective {
        kernel: c.get("kernel").map(|s| s.value.clone()),
        // Only `pciex1` itself here: setup writes that name, whatever `nvme` says.
        pciex1: c
            .dtparam("pciex1")
            .is_some_and(|(v, _)| !matches!(v.as_str(), "off" | "0")),
        pciex1_gen: c.pciex1_gen(),
        uncertain: uncertain
            .iter()
            .map(|s| format!("line {}: {}", s.line, s.raw))
            .collect(),
    }
}

/// The settings inside pigpu's block(s), in order; empty when there is none.
pub fn managed_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t == BEGIN {
            inside = true;
        } else if t == END {
            inside = false;
        } else if inside && config_txt::key_value(line).is_some() {
            out.push(t.to_string());
        }
    }
    out
}

/// Removes every pigpu block (an unterminated one runs to the end of the file) and the blank
/// line pigpu put before it, leaving every other byte as it was.
pub fn remove_block(text: &str) -> String {
    // Only whole lines go, so what is left of UTF-8 text is UTF-8 (the lossy step copies it).
    String::from_utf8_lossy(&remove_block_bytes(text.as_bytes())).into_owned()
}

/// [`remove_block`] on bytes. Each line is judged by its lossy text (pigpu's markers are ASCII)
/// and kept as bytes, so a file that is not UTF-8 (a comment in Latin-1) keeps its other lines.
fn remove_block_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut inside = false;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let t = String::from_utf8_lossy(line);
        let t = t.trim();
        if !inside && t == BEGIN {
            inside = true;
            // The separator blank line pigpu adds before its block.
            if out.ends_with(b"\n\n") {
                out.pop();
            }
            continue;
        }
        if inside {
            if t == END {
                inside = false;
            }
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// The text with pigpu's block holding exactly `settings` (each a `key=value` line), at the end
/// of the file; with no settings the block is removed. Applying it twice gives the same text.
pub fn set_block(text: &str, settings: &[String]) -> String {
    // Lines are added and removed whole, so UTF-8 text stays UTF-8.
    String::from_utf8_lossy(&set_block_bytes(text.as_bytes(), settings)).into_owned()
}

/// [`set_block`] on bytes: every line outside pigpu's block is kept byte for byte, even when
/// the file is not UTF-8 (a comment in Latin-1); only pigpu's own (ASCII) lines are written.
pub fn set_block_bytes(bytes: &[u8], settings: &[String]) -> Vec<u8> {
    let mut out = remove_block_bytes(bytes);
    if settings.is_empty() {
        return out;
    }
    let crlf = bytes.windows(2).any(|w| w == b"\r\n");
    let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(newline);
    }
    if !out.is_empty() {
        out.extend_from_slice(newline);
    }
    let mut block = vec![
        BEGIN,
        "# [all] first: filters above cannot narrow this block; [pi5] covers Pi 5, Pi 500 and CM5.",
        "[all]",
        "[pi5]",
    ];
    block.extend(settings.iter().map(String::as_str));
    block.extend(["[all]", END]);
    for l in block {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PI_OS_DEFAULT: &str = include_str!("../../tests/fixtures/setup/config/pios-bookworm.txt");
    const CM5_CUSTOM: &str = include_str!("../../tests/fixtures/setup/config/cm5-custom.txt");
    const DUPLICATES: &str = include_str!("../../tests/fixtures/setup/config/duplicates.txt");

    fn ours() -> Vec<String> {
        vec![
            "kernel=kernel8.img".to_string(),
            "dtparam=pciex1".to_string(),
            "dtparam=pciex1_gen=3".to_string(),
        ]
    }

    #[test]
    fn bytes_outside_the_block_survive_when_not_utf8() {
        let mut original = b"# Caf\xe9\n".to_vec();
        original.extend_from_slice(PI_OS_DEFAULT.as_bytes());
        let ours = vec!["dtparam=pciex1".to_string()];
        let with = set_block_bytes(&original, &ours);
        assert!(with.starts_with(&original));
        assert!(String::from_utf8_lossy(&with).contains("[pi5]\ndtparam=pciex1\n"));
        assert_eq!(set_block_bytes(&with, &ours), with);
        assert_eq!(set_block_bytes(&with, &[]), original);
        // UTF-8 text gives exactly what set_block gives.
        let utf8 = PI_OS_DEFAULT.as_bytes();
        assert_eq!(
            set_block_bytes(utf8, &ours),
            set_block(PI_OS_DEFAULT, &ours).into_bytes()
        );
    }

    #[test]
    fn default_pi_os_file_boots_the_16k_kernel_without_pcie() {
        let e = effective(PI_OS_DEFAULT, Board::Pi5);
        assert_eq!(e.kernel, None);
        assert_eq!(e.kernel_image(Board::Pi5), "kernel_2712.img");
        assert!(!e.pciex1);
        assert_eq!(e.pciex1_gen, None);
    }

    #[test]
    fn editing_is_idempotent_and_preserves_every_other_line() {
        for (name, text) in [
            ("pios", PI_OS_DEFAULT),
            ("cm5", CM5_CUSTOM),
            ("dups", DUPLICATES),
        ] {
            // Without a pigpu block of its own, the file is left as it is by a removal.
            let base = remove_block(text);
            if name != "dups" {
                assert_eq!(base, text, "{name}");
            }
            let once = set_block(text, &ours());
            let twice = set_block(&once, &ours());
            assert_eq!(once, twice, "{name}: second edit changed the file");
            // Everything before the block is the original, byte for byte.
            assert!(once.starts_with(&base), "{name}");
            let e = effective(&once, Board::Pi5);
            assert_eq!(e.kernel.as_deref(), Some("kernel8.img"), "{name}");
            assert!(e.pciex1, "{name}");
            assert_eq!(e.pciex1_gen, Some(3), "{name}");
            // Removing the block gives the original back.
            assert_eq!(remove_block(&once), base, "{name}: removal not byte-exact");
            assert_eq!(managed_lines(&once), ours(), "{name}");
        }
    }

    #[test]
    fn cm5_sections_are_read_for_the_right_board() {
        // cm5-custom.txt sets kernel_2712.img under [cm5] and kernel8.img under [pi4].
        let cm5 = effective(CM5_CUSTOM, Board::Cm5);
        assert_eq!(cm5.kernel.as_deref(), Some("kernel_2712.img"));
        assert_eq!(cm5.pciex1_gen, Some(2));
        let pi5 = effective(CM5_CUSTOM, Board::Pi5);
        assert_eq!(pi5.kernel, None, "[cm5] must not apply to a Pi 5");
        // Under [gpio4=1] pigpu cannot know: reported, not counted.
        assert!(
            cm5.uncertain.iter().any(|l| l.contains("pciex1")),
            "{cm5:?}"
        );
        // And our block wins on both boards.
        let edited = set_block(CM5_CUSTOM, &ours());
        assert_eq!(
            effective(&edited, Board::Cm5).kernel.as_deref(),
            Some("kernel8.img")
        );
    }

    #[test]
    fn duplicate_blocks_collapse_into_one_at_the_end() {
        let e = effective(DUPLICATES, Board::Pi5);
        // Two kernel= lines under [pi5] and [all]: the last one wins.
        assert_eq!(e.kernel.as_deref(), Some("kernel_2712.img"));
        let edited = set_block(DUPLICATES, &ours());
        assert_eq!(edited.matches(BEGIN).count(), 1);
        assert!(edited.trim_end().ends_with(END));
        // The hand-copied stale block's settings are gone, the user's own lines stay.
        assert!(edited.contains("dtparam=audio=on"));
        assert!(!edited.contains("dtparam=pciex1_gen=1"));
    }

    #[test]
    fn empty_settings_remove_the_block_and_missing_final_newline_is_handled() {
        let text = "arm_64bit=1";
        let edited = set_block(text, &["kernel=kernel8.img".to_string()]);
        assert!(edited.starts_with("arm_64bit=1\n\n"));
        assert_eq!(set_block(&edited, &[]), "arm_64bit=1\n");
        assert_eq!(set_block("", &[]), "");
        let fresh = set_block("", &["kernel=kernel8.img".to_string()]);
        assert!(fresh.starts_with(BEGIN));
    }

    #[test]
    fn dtparam_lists_and_comments() {
        let t = "dtparam=audio=on,pciex1 # external port\n[pi4]\ndtparam=pciex1_gen=3\n[all]\n";
        let e = effective(t, Board::Pi5);
        assert!(e.pciex1);
        assert_eq!(e.pciex1_gen, None, "[pi4] does not apply to a Pi 5");
        let off = effective("dtparam=pciex1=off\n", Board::Pi5);
        assert!(!off.pciex1);
    }
}
