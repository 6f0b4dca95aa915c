//! `platform`: which board this is (the platform model's one board type). NVIDIA GPUs work on
//! the Pi 5 / CM5 (BCM2712) with the patched open modules; the Pi 4 / CM4 is not supported; on
//! any other machine the Pi-specific checks and fixes do not apply.

use crate::doctor::{Finding, Patient};
use crate::platform::Board;

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let p = host.platform();
    let shown = p.model.clone().unwrap_or_default();
    let evidence = format!("/proc/device-tree/model: {shown}");
    let f = match p.board {
        Board::Pi5 | Board::Cm5 | Board::Pi500 => Finding::ok(
            "platform",
            format!("{shown} (BCM2712): a supported board"),
        )
        .evidence(evidence),
        Board::OtherPi if p.is_raspberry_pi() => Finding::warn(
            "platform-unsupported",
            format!("{shown} is not a Pi 5 / CM5 (a BCM2711 Pi 4 / CM4 or older): NVIDIA GPUs are known to work only on the Pi 5 / CM5"),
        )
        .evidence(evidence)
        .fix("use a Raspberry Pi 5 or Compute Module 5"),
        Board::OtherPi => Finding::info(
            "platform",
            format!("{shown} is not a Raspberry Pi; Pi-specific checks and fixes do not apply"),
        )
        .evidence(evidence),
        Board::Unknown if p.is_raspberry_pi() => Finding::info(
            "platform",
            "no device tree, but a Raspberry Pi boot partition (config.txt): read as a Pi 5 image",
        ),
        Board::Unknown => Finding::info(
            "platform",
            "no device tree: this is not a Raspberry Pi; Pi-specific checks and fixes are skipped",
        ),
    };
    Ok(vec![f])
}
