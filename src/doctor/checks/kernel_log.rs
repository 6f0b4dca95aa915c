//! `kernel-log`: the known signatures (see `signatures`) in the running system's kernel log —
//! `dmesg` (or `journalctl -k`, or /var/log/kern.log) on the live system, `ROOT/var/log/kern.log`
//! under a fake root.

use crate::doctor::logs::{analyze, Source};
use crate::doctor::{Finding, Patient, Status};

pub fn run(host: &Patient) -> anyhow::Result<Vec<Finding>> {
    let (text, source) = match host.kernel_log() {
        Ok(x) => x,
        Err(why) => {
            return Ok(vec![Finding::skip(
                "kernel-log",
                format!("cannot read the kernel log ({why})"),
            )
            .fix("run as root (sudo pigpu doctor), or save it and pass it in: sudo dmesg > kern.txt; pigpu doctor --log kern.txt")])
        }
    };
    let lines = text.lines().count();
    let mut found = analyze(&[Source {
        label: "",
        text: &text,
    }]);
    found.retain(|f| f.id != "log-input");
    let problems = found.iter().filter(|f| f.status >= Status::Warn).count();
    if problems == 0 {
        found.insert(
            0,
            Finding::ok(
                "kernel-log",
                format!("no known problem in the kernel log ({source}, {lines} lines)"),
            ),
        );
    }
    Ok(found)
}
