//! `platform`: which board this is (device-tree model and compatible). NVIDIA GPUs work on the
//! Pi 5 / CM5 (BCM2712) with the patched open modules; the Pi 4 / CM4 is not supported.

use super::{board, Board};
use crate::doctor::{Finding, Host};

pub fn run(host: &Host) -> anyhow::Result<Vec<Finding>> {
    let (b, model) = board(host);
    let shown = model.clone().unwrap_or_default();
    let f = match b {
        Board::Pi5 | Board::Cm5 | Board::Pi500 => Finding::ok(
            "platform",
            format!("{shown} (BCM2712): a supported board"),
        )
        .evidence(format!("/proc/device-tree/model: {shown}")),
        Board::Pi4 => Finding::warn(
            "platform-unsupported",
            format!("{shown} is a BCM2711 board (Pi 4 / CM4 family): NVIDIA GPUs are known to work only on the Pi 5 / CM5"),
        )
        .evidence(format!("/proc/device-tree/model: {shown}"))
        .fix("use a Raspberry Pi 5 or Compute Module 5"),
        Board::Other(m) => Finding::info(
            "platform",
            format!("{m} is not a Raspberry Pi 5 / CM5; Pi-specific checks may not apply"),
        )
        .evidence(format!("/proc/device-tree/model: {m}")),
        Board::Unknown => Finding::info(
            "platform",
            "no device tree: this is not a Raspberry Pi; Pi-specific checks are skipped",
        ),
    };
    Ok(vec![f])
}
