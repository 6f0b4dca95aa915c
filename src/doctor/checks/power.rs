//! `power`: the Pi firmware's throttling flags (`get_throttled`: under-voltage, frequency cap,
//! thermal throttling, now and since boot), the PMIC's under-voltage alarm and the SoC
//! temperature. A GPU pulls its power from its own supply, but a browning-out Pi drops the link.

use crate::doctor::{Finding, Patient};

/// Bits of `get_throttled` (the same as `vcgencmd get_throttled`).
const FLAGS: &[(u32, &str)] = &[
    (0, "under-voltage now"),
    (1, "ARM frequency capped now"),
    (2, "throttled now"),
    (3, "soft temperature limit now"),
    (16, "under-voltage has occurred"),
    (17, "ARM frequency capping has occurred"),
    (18, "throttling has occurred"),
    (19, "soft temperature limit has occurred"),
];

/// Where the firmware driver exposes `get_throttled` (its platform device name differs between
/// the Pi 4 and the Pi 5 device trees).
fn throttled_path(host: &Patient) -> Option<String> {
    let base = "/sys/devices/platform";
    for soc in host.root.list_dir(base).unwrap_or_default() {
        if !soc.starts_with("soc") {
            continue;
        }
        for fw in host
            .root
            .list_dir(format!("{base}/{soc}"))
            .unwrap_or_default()
        {
            if fw.contains("firmware") {
                let p = format!("{base}/{soc}/{fw}/get_throttled");
                if host.root.exists(&p) {
                    return Some(p);
                }
            }
        }
    }
    None
}

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    if let Some(p) = throttled_path(host) {
        let text = host.read(&p).unwrap_or_default();
        match u32::from_str_radix(text.trim_start_matches("0x"), 16) {
            Ok(0) => out.push(
                Finding::ok(
                    "power-throttling",
                    "no under-voltage or throttling since boot",
                )
                .evidence(format!("{p}: {text}")),
            ),
            Ok(v) => {
                let now: Vec<&str> = FLAGS
                    .iter()
                    .filter(|(b, _)| *b < 16 && v & (1 << b) != 0)
                    .map(|(_, s)| *s)
                    .collect();
                let past: Vec<&str> = FLAGS
                    .iter()
                    .filter(|(b, _)| *b >= 16 && v & (1 << b) != 0)
                    .map(|(_, s)| *s)
                    .collect();
                let fix = "use the official 27 W (5 V 5 A) supply for the Pi, a separate ATX/GPU supply for the card, and cooling for the Pi";
                let f = if !now.is_empty() {
                    Finding::warn(
                        "power-throttling",
                        format!(
                            "the Pi reports: {}",
                            now.iter()
                                .chain(past.iter())
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                } else {
                    Finding::info(
                        "power-throttling",
                        format!("since boot: {}", past.join(", ")),
                    )
                };
                out.push(f.evidence(format!("{p}: {text}")).fix(fix));
            }
            Err(_) => out.push(Finding::skip(
                "power-throttling",
                format!("{p} holds {text:?}, not a hex flag word"),
            )),
        }
    }
    for hw in host.root.list_dir("/sys/class/hwmon").unwrap_or_default() {
        let dir = format!("/sys/class/hwmon/{hw}");
        if host.read(&format!("{dir}/name")).as_deref() == Some("rpi_volt")
            && host.read(&format!("{dir}/in0_lcrit_alarm")).as_deref() == Some("1")
        {
            out.push(
                Finding::warn("power-undervoltage", "the Pi's PMIC reports under-voltage")
                    .evidence(format!("{dir}/in0_lcrit_alarm: 1"))
                    .fix("use the official 27 W (5 V 5 A) supply for the Pi"),
            );
        }
    }
    if let Some(t) = host
        .read("/sys/class/thermal/thermal_zone0/temp")
        .and_then(|t| t.parse::<i64>().ok())
    {
        let c = t as f64 / 1000.0;
        if c >= 80.0 {
            out.push(
                Finding::warn(
                    "power-temperature",
                    format!("the SoC is at {c:.1} °C and throttles from 80 °C"),
                )
                .evidence(format!("/sys/class/thermal/thermal_zone0/temp: {t}"))
                .fix("add cooling (the active cooler or a fan case)"),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::skip(
            "power",
            "no Pi firmware throttling information on this system",
        ));
    }
    Ok(out)
}
