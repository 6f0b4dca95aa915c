//! The Raspberry Pi firmware's `config.txt`: reading what applies to a Pi 5 / CM5 and editing
//! the one block pigpu owns, as pure `&str → String` functions (no I/O), so every edit can be
//! tested on real-world files and is idempotent.
//!
//! pigpu never rewrites lines it does not own. Its settings live in one marked block at the end
//! of the file (the firmware applies the last value of a repeated setting, so the end is where
//! they take effect), wrapped in `[all]` … `[pi5]` … `[all]` so that filters above it cannot
//! narrow it and lines appended after it by hand are not caught in its `[pi5]` section.

/// First line of pigpu's block.
pub const BEGIN: &str =
    "# >>> pigpu setup: begin (managed by `pigpu setup`; `pigpu setup --undo` removes it)";
/// Last line of pigpu's block.
pub const END: &str = "# <<< pigpu setup: end";

/// The board the file is read for (model filters `[pi5]`, `[cm5]`, `[pi500]` differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Board {
    Pi5,
    Pi500,
    Cm5,
    /// Another Raspberry Pi (Pi 4, …): setup refuses it, but the file can still be read.
    OtherPi,
    /// Not known (an offline image has no `/proc/device-tree/model`): read as a Pi 5 family board.
    Unknown,
}

impl Board {
    /// From `/proc/device-tree/model` ("Raspberry Pi 5 Model B Rev 1.0",
    /// "Raspberry Pi Compute Module 5 Rev 1.0", "Raspberry Pi 500 Rev 1.0").
    pub fn from_model(model: &str) -> Board {
        let m = model.trim_end_matches('\0').trim();
        if m.starts_with("Raspberry Pi Compute Module 5") {
            Board::Cm5
        } else if m.starts_with("Raspberry Pi 500") {
            Board::Pi500
        } else if m.starts_with("Raspberry Pi 5") {
            Board::Pi5
        } else {
            Board::OtherPi
        }
    }

    /// Whether this is a BCM2712 board (Pi 5, Pi 500, CM5) or assumed to be one.
    pub fn is_pi5_family(self) -> bool {
        !matches!(self, Board::OtherPi)
    }

    /// The kernel image the firmware boots when `config.txt` names none.
    pub fn default_kernel(self) -> &'static str {
        if self.is_pi5_family() {
            "kernel_2712.img"
        } else {
            "kernel8.img"
        }
    }

    /// Whether a section filter (the text between the brackets, lowercased) selects this board.
    /// `None` for conditional filters pigpu does not evaluate (`[gpio4=1]`, `[EDID=…]`,
    /// `[tryboot]`, serial numbers): settings under them are not counted as applying.
    fn filter_applies(self, filter: &str) -> Option<bool> {
        let f = filter.trim().to_ascii_lowercase();
        let model = match f.as_str() {
            "all" => return Some(true),
            "none" => return Some(false),
            "pi5" => self.is_pi5_family(),
            "cm5" => self == Board::Cm5,
            "pi500" => self == Board::Pi500,
            "pi1" | "pi2" | "pi3" | "pi3+" | "pi4" | "pi400" | "cm4" | "cm4s" | "pi0" | "pi0w"
            | "pi02"
                if self.is_pi5_family() =>
            {
                false
            }
            "pi1" | "pi2" | "pi3" | "pi3+" | "pi4" | "pi400" | "cm4" | "cm4s" | "pi0" | "pi0w"
            | "pi02" => return None,
            _ => return None,
        };
        Some(model)
    }
}

/// What the file says for the settings pigpu cares about, for one board.
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

/// A section header line (`[pi5]`, `[all] # comment`): the filter text.
fn section_filter(line: &str) -> Option<&str> {
    let t = line.trim();
    let rest = t.strip_prefix('[')?;
    let end = rest.find(']')?;
    let after = rest[end + 1..].trim();
    if !after.is_empty() && !after.starts_with('#') {
        return None;
    }
    Some(&rest[..end])
}

/// `key=value` of a setting line, without comments; `None` for blanks and comments.
fn setting(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let t = match t.find('#') {
        Some(i) => t[..i].trim_end(),
        None => t,
    };
    let (k, v) = t.split_once('=')?;
    Some((k.trim(), v.trim()))
}

/// Reads the settings that apply to `board` (including pigpu's own block).
pub fn effective(text: &str, board: Board) -> Effective {
    let mut eff = Effective::default();
    let mut applies: Option<bool> = Some(true);
    for (n, line) in text.lines().enumerate() {
        if let Some(filter) = section_filter(line) {
            applies = board.filter_applies(filter);
            continue;
        }
        let Some((key, value)) = setting(line) else {
            continue;
        };
        let relevant = key == "kernel" || (key == "dtparam" && value.contains("pciex1"));
        if !relevant {
            continue;
        }
        match applies {
            Some(true) => {}
            Some(false) => continue,
            None => {
                eff.uncertain
                    .push(format!("line {}: {}", n + 1, line.trim()));
                continue;
            }
        }
        if key == "kernel" {
            eff.kernel = Some(value.to_string());
            continue;
        }
        // `dtparam=` takes a comma-separated list of `name[=value]`.
        for param in value.split(',') {
            let (name, val) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            match name {
                "pciex1" => eff.pciex1 = !matches!(val, Some("off") | Some("0")),
                "pciex1_gen" => eff.pciex1_gen = val.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
    }
    eff
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
        } else if inside && setting(line).is_some() {
            out.push(t.to_string());
        }
    }
    out
}

/// Whether the text contains pigpu's block.
pub fn has_block(text: &str) -> bool {
    text.lines().any(|l| l.trim() == BEGIN)
}

/// Removes every pigpu block (an unterminated one runs to the end of the file) and the blank
/// line pigpu put before it, leaving every other byte as it was.
pub fn remove_block(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if !inside && t == BEGIN {
            inside = true;
            // The separator blank line pigpu adds before its block.
            if out.ends_with("\n\n") {
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
        out.push_str(line);
    }
    out
}

/// The text with pigpu's block holding exactly `settings` (each a `key=value` line), at the end
/// of the file; with no settings the block is removed. Applying it twice gives the same text.
pub fn set_block(text: &str, settings: &[String]) -> String {
    let mut out = remove_block(text);
    if settings.is_empty() {
        return out;
    }
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(newline);
    }
    if !out.is_empty() {
        out.push_str(newline);
    }
    let mut block = vec![
        BEGIN.to_string(),
        "# [all] first: filters above cannot narrow this block; [pi5] covers Pi 5, Pi 500 and CM5."
            .to_string(),
        "[all]".to_string(),
        "[pi5]".to_string(),
    ];
    block.extend(settings.iter().cloned());
    block.push("[all]".to_string());
    block.push(END.to_string());
    for l in block {
        out.push_str(&l);
        out.push_str(newline);
    }
    out
}

/// [`set_block`] on bytes: every line outside pigpu's block is kept byte for byte, even when
/// the file is not UTF-8 (a comment in Latin-1); only pigpu's own (ASCII) lines are written.
pub fn set_block_bytes(bytes: &[u8], settings: &[String]) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return set_block(text, settings).into_bytes();
    }
    // Each line is judged by its lossy text (pigpu's markers are ASCII) and copied as bytes.
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut inside = false;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let t = String::from_utf8_lossy(line);
        let t = t.trim();
        if !inside && t == BEGIN {
            inside = true;
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
    if settings.is_empty() {
        return out;
    }
    // The block itself is ASCII: build it on an empty text, then join.
    let crlf = bytes.windows(2).any(|w| w == b"\r\n");
    let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(newline);
    }
    if !out.is_empty() {
        out.extend_from_slice(newline);
    }
    let mut block = set_block("", settings);
    if crlf {
        block = block.replace('\n', "\r\n");
    }
    out.extend_from_slice(block.as_bytes());
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

    #[test]
    fn board_from_device_tree_model() {
        assert_eq!(
            Board::from_model("Raspberry Pi 5 Model B Rev 1.0\0"),
            Board::Pi5
        );
        assert_eq!(
            Board::from_model("Raspberry Pi Compute Module 5 Rev 1.0\0"),
            Board::Cm5
        );
        assert_eq!(Board::from_model("Raspberry Pi 500 Rev 1.0"), Board::Pi500);
        assert_eq!(
            Board::from_model("Raspberry Pi 4 Model B Rev 1.4"),
            Board::OtherPi
        );
    }
}
