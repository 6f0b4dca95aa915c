//! Which board this is: the one board type doctor and setup share, read from the device tree
//! (`/proc/device-tree/model`, else `compatible`), and the `config.txt` model filters it selects.

use serde::Serialize;

/// The board, as far as pigpu cares (model filters `[pi5]`, `[cm5]`, `[pi500]` differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Board {
    /// Raspberry Pi 5 (`[pi5]`).
    Pi5,
    /// Raspberry Pi 500 keyboard computer (`[pi500]`).
    Pi500,
    /// Compute Module 5 (`[cm5]`).
    Cm5,
    /// Another device-tree machine: a Pi 4 / CM4 / older Pi, or not a Raspberry Pi at all
    /// (`Platform::is_raspberry_pi` tells which). Setup refuses it.
    OtherPi,
    /// No device tree: an offline image (read as a Pi 5 family board by setup), or a PC.
    Unknown,
}

impl Board {
    /// From `/proc/device-tree/model` ("Raspberry Pi 5 Model B Rev 1.0",
    /// "Raspberry Pi Compute Module 5 Rev 1.0", "Raspberry Pi 500 Rev 1.0").
    fn from_model(model: &str) -> Board {
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

    /// From the model string when there is one, else the NUL-separated `compatible` list.
    pub fn detect(model: Option<&str>, compatible: Option<&str>) -> Board {
        if let Some(m) = model.map(|m| m.trim_end_matches('\0').trim()) {
            if !m.is_empty() {
                return Board::from_model(m);
            }
        }
        let compat: Vec<&str> = compatible
            .unwrap_or("")
            .split('\0')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if compat.contains(&"raspberrypi,5-compute-module") {
            Board::Cm5
        } else if compat.iter().any(|c| c.starts_with("raspberrypi,500")) {
            Board::Pi500
        } else if compat.contains(&"raspberrypi,5-model-b") || compat.contains(&"brcm,bcm2712") {
            Board::Pi5
        } else if compat.is_empty() {
            Board::Unknown
        } else {
            Board::OtherPi
        }
    }

    /// Whether this is a BCM2712 board (Pi 5, Pi 500, CM5) or assumed to be one (`Unknown`).
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

    /// Whether a model filter (`pi5`, `cm4`, … lowercased) selects this board; `None` when the
    /// text is not a model filter.
    pub fn model_filter(self, filter: &str) -> Option<bool> {
        Some(match filter {
            "pi5" => self.is_pi5_family(),
            "cm5" => self == Board::Cm5,
            "pi500" => self == Board::Pi500,
            "pi1" | "pi2" | "pi3" | "pi3+" | "pi4" | "pi400" | "cm4" | "cm4s" | "pi0" | "pi0w"
            | "pi02" | "cm1" | "cm3" | "cm3+" => self == Board::OtherPi,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_from_model_and_compatible() {
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
        assert_eq!(
            Board::detect(None, Some("raspberrypi,5-compute-module\0brcm,bcm2712\0")),
            Board::Cm5
        );
        assert_eq!(Board::detect(Some(""), Some("brcm,bcm2712\0")), Board::Pi5);
        assert_eq!(Board::detect(None, Some("nvidia,p3737\0")), Board::OtherPi);
        assert_eq!(Board::detect(None, None), Board::Unknown);
        assert_eq!(Board::Pi5.model_filter("cm5"), Some(false));
        assert_eq!(Board::OtherPi.model_filter("pi4"), Some(true));
        assert_eq!(Board::Pi5.model_filter("gpio4=1"), None);
    }
}
