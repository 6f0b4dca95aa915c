//! The one `config.txt` parser: every setting with its line, and whether it applies to this
//! board, with the section filters resolved once. Model filters (`[pi5]`, `[cm4]`) replace each
//! other, other conditional filters (`[gpio4=1]`, `[EDID=…]`, `[HDMI:1]`, `[tryboot]`, serial
//! numbers) are ANDed with them and cannot be evaluated by pigpu: settings under them are
//! *uncertain* (neither counted as applying nor ignored silently). `[all]` resets every filter.

use serde::Serialize;

use super::board::Board;

/// The config.txt locations: Bookworm and later, then the older one.
pub const CONFIG_PATHS: &[&str] = &["/boot/firmware/config.txt", "/boot/config.txt"];

/// One `key=value` setting. `dtparam=a,b=c` lines give one `dtparam` setting per parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The setting's name (`dtoverlay`, `kernel`, `dtparam`).
    pub key: String,
    /// Its value as written after the first `=` (one parameter for `dtparam` lists).
    pub value: String,
    /// 1-based line number.
    pub line: usize,
    /// The line as written (trimmed).
    pub raw: String,
    /// `Some(true)`: applies to this board; `Some(false)`: filtered out; `None`: under a
    /// conditional filter pigpu cannot evaluate.
    pub applies: Option<bool>,
}

/// A parsed config.txt: its system path and settings in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigTxt {
    /// The system path the text was read from (`/boot/firmware/config.txt`).
    pub path: String,
    /// Every setting, in file order.
    pub settings: Vec<Setting>,
}

/// A section header line (`[pi5]`, `[all] # comment`): the filter text, lowercased.
fn section_filter(line: &str) -> Option<String> {
    let t = line.trim();
    let rest = t.strip_prefix('[')?;
    let end = rest.find(']')?;
    let after = rest[end + 1..].trim();
    if !after.is_empty() && !after.starts_with('#') {
        return None;
    }
    Some(rest[..end].trim().to_ascii_lowercase())
}

/// `key=value` of a setting line, without comments; `None` for blanks and comments.
pub fn key_value(line: &str) -> Option<(&str, &str)> {
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

/// Every setting of `text` with whether it applies to `board`.
pub fn parse(text: &str, board: Board) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut model = true; // the current model filter selects this board
    let mut none = false; // under [none]
    let mut conditional = false; // under a filter pigpu cannot evaluate
    for (i, line) in text.lines().enumerate() {
        if let Some(filter) = section_filter(line) {
            match filter.as_str() {
                "all" => (model, none, conditional) = (true, false, false),
                "none" => none = true,
                f => match board.model_filter(f) {
                    Some(m) => model = m,
                    None => conditional = true,
                },
            }
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        let applies = if none || !model {
            Some(false)
        } else if conditional {
            None
        } else {
            Some(true)
        };
        let mut push = |value: &str| {
            out.push(Setting {
                key: key.to_string(),
                value: value.to_string(),
                line: i + 1,
                raw: line.trim().to_string(),
                applies,
            })
        };
        if key == "dtparam" {
            value.split(',').map(str::trim).for_each(&mut push);
        } else {
            push(value);
        }
    }
    out
}

impl ConfigTxt {
    /// Parses `text` (read from `path`), resolving section filters for `board`.
    pub fn new(path: &str, text: &str, board: Board) -> ConfigTxt {
        ConfigTxt {
            path: path.to_string(),
            settings: parse(text, board),
        }
    }

    /// The settings that apply, in file order.
    pub fn applying(&self) -> impl Iterator<Item = &Setting> {
        self.settings.iter().filter(|s| s.applies == Some(true))
    }

    /// The last applying setting of `key`.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.applying().filter(|s| s.key == key).last()
    }

    /// The value of the last applying `dtparam=name[=value]` (`dtparam=pciex1` → "on").
    pub fn dtparam(&self, name: &str) -> Option<(String, &Setting)> {
        self.applying()
            .filter(|s| s.key == "dtparam")
            .filter_map(|s| {
                let (k, v) = s.value.split_once('=').unwrap_or((s.value.as_str(), "on"));
                (k.trim() == name).then(|| (v.trim().to_string(), s))
            })
            .last()
    }

    /// Settings of `key` (or dtparams named `key`) under filters pigpu cannot evaluate.
    pub fn uncertain(&self, key: &str) -> Vec<&Setting> {
        self.settings
            .iter()
            .filter(|s| s.applies.is_none())
            .filter(|s| s.key == key || (s.key == "dtparam" && s.value.starts_with(key)))
            .collect()
    }

    /// The external port is on: `dtparam=pciex1` (or `nvme`) applies and is not off.
    pub fn pciex1(&self) -> Option<(bool, &Setting)> {
        self.dtparam("pciex1")
            .or_else(|| self.dtparam("nvme"))
            .map(|(v, s)| (!matches!(v.as_str(), "off" | "0" | "false" | "no"), s))
    }

    /// The PCIe generation asked for on the external port.
    pub fn pciex1_gen(&self) -> Option<u32> {
        self.dtparam("pciex1_gen").and_then(|(v, _)| v.parse().ok())
    }

    /// The kernel image that boots: the last applying `kernel=`, else the board's default.
    pub fn kernel_image(&self, board: Board) -> String {
        self.get("kernel")
            .map(|s| s.value.clone())
            .unwrap_or_else(|| board.default_kernel().to_string())
    }

    /// `path:line: text`, for evidence.
    pub fn cite(&self, s: &Setting) -> String {
        format!("{}:{}: {}", self.path, s.line, s.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_filter_settings() {
        let text = "dtparam=audio=on\n[pi4]\nkernel=kernel7l.img\n[cm5]\ndtparam=pciex1_gen=3\n[pi5]\ndtparam=pciex1,pciex1_gen=2 # fast\n[all]\nkernel=kernel8.img\n[none]\nkernel=x.img\n";
        let c = ConfigTxt::new("/boot/firmware/config.txt", text, Board::Pi5);
        assert_eq!(c.get("kernel").unwrap().value, "kernel8.img");
        assert_eq!(c.pciex1_gen(), Some(2));
        assert_eq!(c.dtparam("pciex1").unwrap().0, "on");
        let cm5 = ConfigTxt::new("c", text, Board::Cm5);
        // [pi5] also applies to a CM5 and comes later.
        assert_eq!(cm5.pciex1_gen(), Some(2));
        // A model filter replaces the one before it.
        let c = ConfigTxt::new("c", "[pi5]\n[cm5]\ndtparam=pciex1_gen=3\n", Board::Pi5);
        assert_eq!(c.pciex1_gen(), None);
    }

    #[test]
    fn conditional_filters_are_uncertain_not_applying() {
        // The contradiction doctor and setup had: doctor counted [gpio4=1] as applying.
        let text = "[pi5]\ndtparam=pciex1_gen=2\n[gpio4=1]\ndtparam=pciex1_gen=3\nkernel=kernel8.img\n[all]\ndtparam=pciex1\n";
        let c = ConfigTxt::new("c", text, Board::Pi5);
        assert_eq!(c.pciex1_gen(), Some(2));
        assert_eq!(c.get("kernel"), None);
        assert_eq!(c.uncertain("pciex1").len(), 1);
        assert_eq!(c.uncertain("kernel").len(), 1);
        assert!(c.pciex1().unwrap().0, "[all] resets the conditional filter");
        // Under a model filter that excludes the board, a conditional one changes nothing.
        let c = ConfigTxt::new("c", "[cm5]\n[gpio4=1]\nkernel=x.img\n", Board::Pi5);
        assert!(c.uncertain("kernel").is_empty());
        assert_eq!(c.kernel_image(Board::Pi5), "kernel_2712.img");
        let off = ConfigTxt::new("c", "dtparam=pciex1=off\n", Board::Pi5);
        assert!(!off.pciex1().unwrap().0);
    }
}
