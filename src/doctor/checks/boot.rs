//! `boot-config`: the Pi firmware's `config.txt` — the external PCIe port (`dtparam=pciex1`),
//! its generation (`pciex1_gen`) and the kernel image (`kernel=kernel8.img` for 4K pages) —
//! honouring the `[all]` / `[pi5]` / `[cm5]` section filters the firmware applies.

use super::{board, Board};
use crate::doctor::{Finding, Host};

/// The config.txt locations: Bookworm and later, then the older one.
pub const CONFIG_PATHS: &[&str] = &["/boot/firmware/config.txt", "/boot/config.txt"];

/// A setting that applies to this board: `key=value` from a line, with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub line: usize,
    pub raw: String,
}

/// The settings of a config.txt that apply to `board`, in file order. `dtparam=a,b=c` lines
/// become one `dtparam` setting per parameter (`a`, `b=c`).
pub fn parse(text: &str, board: &Board) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut applies = true;
    let mut prev_was_filter = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(filter) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let this = filter_applies(filter.trim(), board);
            // Consecutive filters combine (AND); [all] resets.
            applies = if filter.trim() == "all" {
                true
            } else if prev_was_filter {
                applies && this
            } else {
                this
            };
            prev_was_filter = true;
            continue;
        }
        prev_was_filter = false;
        if !applies {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_string();
        if key == "dtparam" {
            for p in value.split(',') {
                out.push(Setting {
                    key: key.clone(),
                    value: p.trim().to_string(),
                    line: i + 1,
                    raw: raw.trim().to_string(),
                });
            }
        } else {
            out.push(Setting {
                key,
                value: value.trim().to_string(),
                line: i + 1,
                raw: raw.trim().to_string(),
            });
        }
    }
    out
}

fn filter_applies(filter: &str, board: &Board) -> bool {
    // Unknown boards are judged as a Pi 5: that is the machine doctor is for.
    let pi5 = board.is_pi5_family() || matches!(board, Board::Unknown | Board::Other(_));
    match filter {
        "all" => true,
        "none" | "tryboot" => false,
        "pi5" => pi5,
        "cm5" => *board == Board::Cm5,
        "pi500" => *board == Board::Pi500,
        "pi4" | "pi400" | "cm4" | "cm4s" => *board == Board::Pi4,
        "pi0" | "pi0w" | "pi02" | "pi1" | "pi2" | "pi3" | "pi3+" | "cm1" | "cm3" | "cm3+" => false,
        // Conditional filters (HDMI, EDID, gpio, board-type, partition): assume they hold.
        _ => true,
    }
}

/// The config.txt that exists, its path and its settings for this board.
pub fn load(host: &Host) -> Option<(String, Vec<Setting>)> {
    let (b, _) = board(host);
    CONFIG_PATHS
        .iter()
        .find_map(|p| host.read(p).map(|t| (p.to_string(), parse(&t, &b))))
}

/// The value of a `dtparam` (last one wins): `dtparam=pciex1` → Some("on").
pub fn dtparam<'a>(settings: &'a [Setting], name: &str) -> Option<(String, &'a Setting)> {
    settings
        .iter()
        .filter(|s| s.key == "dtparam")
        .filter_map(|s| {
            let (k, v) = s.value.split_once('=').unwrap_or((s.value.as_str(), "on"));
            (k.trim() == name).then(|| (v.trim().to_string(), s))
        })
        .next_back()
}

/// The last setting of `key`.
pub fn get<'a>(settings: &'a [Setting], key: &str) -> Option<&'a Setting> {
    settings.iter().rfind(|s| s.key == key)
}

/// The PCIe generation config.txt asks for on the external port, if any.
pub fn configured_gen(host: &Host) -> Option<u32> {
    let (_, s) = load(host)?;
    dtparam(&s, "pciex1_gen").and_then(|(v, _)| v.parse().ok())
}

fn evidence(path: &str, s: &Setting) -> String {
    format!("{path}:{}: {}", s.line, s.raw)
}

pub fn run(host: &Host) -> anyhow::Result<Vec<Finding>> {
    let (b, _) = board(host);
    let Some((path, settings)) = load(host) else {
        return Ok(vec![if b.is_pi5_family() {
            Finding::warn(
                "boot-config",
                "no config.txt found (looked in /boot/firmware and /boot)",
            )
            .fix("is the boot partition mounted? (mount | grep /boot/firmware)")
        } else {
            Finding::skip(
                "boot-config",
                "no config.txt: not a Raspberry Pi boot setup",
            )
        }]);
    };
    let mut out = Vec::new();
    let on = |v: &str| !matches!(v, "off" | "0" | "false" | "no");

    // The external port: off by default on a Pi 5 (unless a HAT+ asks for it), on for a CM5 IO board.
    let port = dtparam(&settings, "pciex1").or_else(|| dtparam(&settings, "nvme"));
    match (&port, &b) {
        (Some((v, s)), _) if on(v) => out.push(
            Finding::ok("pcie-port", "the external PCIe port is enabled (dtparam=pciex1)")
                .evidence(evidence(&path, s)),
        ),
        (Some((_, s)), _) => out.push(
            Finding::fail("pcie-port", "the external PCIe port is switched off in config.txt")
                .evidence(evidence(&path, s))
                .fix(format!("set 'dtparam=pciex1' in {path} and reboot")),
        ),
        (None, Board::Cm5) => out.push(Finding::ok(
            "pcie-port",
            "CM5: the external PCIe port is on by default",
        )),
        (None, _) => out.push(
            Finding::warn(
                "pcie-port",
                "config.txt does not enable the external PCIe port (dtparam=pciex1); a Pi 5 only turns it on by itself for HAT+ boards",
            )
            .evidence(format!("{path}: no dtparam=pciex1"))
            .fix(format!("echo 'dtparam=pciex1' | sudo tee -a {path} && sudo reboot")),
        ),
    }

    if let Some((v, s)) = dtparam(&settings, "pciex1_gen") {
        let f = match v.as_str() {
            "3" => Finding::info(
                "pcie-gen",
                "PCIe Gen 3 is forced: faster, but not certified; use Gen 2 if the link is flaky",
            ),
            "1" | "2" => Finding::ok("pcie-gen", format!("PCIe Gen {v} is configured")),
            other => Finding::warn(
                "pcie-gen",
                format!("pciex1_gen={other} is not a generation the Pi supports (1, 2 or 3)"),
            )
            .fix(format!("use 'dtparam=pciex1_gen=2' (or 3) in {path}")),
        };
        out.push(f.evidence(evidence(&path, s)));
    }

    match get(&settings, "kernel") {
        Some(s) if s.value == "kernel8.img" => out.push(
            Finding::ok("boot-kernel-image", "boots kernel8.img (4K pages, as the NVIDIA driver needs)")
                .evidence(evidence(&path, s)),
        ),
        Some(s) => out.push(
            Finding::warn("boot-kernel-image", format!("boots {}; the NVIDIA driver needs kernel8.img (4K pages)", s.value))
                .evidence(evidence(&path, s))
                .fix(format!("set 'kernel=kernel8.img' in {path} (under [all] or [pi5]) and reboot")),
        ),
        None if b.is_pi5_family() || b == Board::Unknown => out.push(
            Finding::warn(
                "boot-kernel-image",
                "no kernel= line: a Pi 5 boots kernel_2712.img (16K pages); the NVIDIA driver needs kernel8.img",
            )
            .evidence(format!("{path}: no kernel= line"))
            .fix(format!("echo 'kernel=kernel8.img' | sudo tee -a {path} && sudo reboot")),
        ),
        None => {}
    }

    if let Some(s) = settings
        .iter()
        .find(|s| s.key == "dtoverlay" && s.value.starts_with("pcie-32bit-dma"))
    {
        out.push(
            Finding::info(
                "pcie-32bit-dma",
                "dtoverlay=pcie-32bit-dma-pi5 is set: NVIDIA GPUs do not need it",
            )
            .evidence(evidence(&path, s)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_filter_settings() {
        let text = "dtparam=audio=on\n[pi4]\nkernel=kernel7l.img\n[cm5]\ndtparam=pciex1_gen=3\n[pi5]\ndtparam=pciex1,pciex1_gen=2 # fast\n[all]\nkernel=kernel8.img\n[none]\nkernel=x.img\n";
        let s = parse(text, &Board::Pi5);
        assert_eq!(get(&s, "kernel").unwrap().value, "kernel8.img");
        assert_eq!(dtparam(&s, "pciex1_gen").unwrap().0, "2");
        assert_eq!(dtparam(&s, "pciex1").unwrap().0, "on");
        let c = parse(text, &Board::Cm5);
        // [pi5] also applies to a CM5 and comes later.
        assert_eq!(dtparam(&c, "pciex1_gen").unwrap().0, "2");
        let c = parse("[pi5]\n[cm5]\ndtparam=pciex1_gen=3\n", &Board::Pi5);
        assert!(dtparam(&c, "pciex1_gen").is_none(), "[pi5][cm5] is an AND");
    }
}
