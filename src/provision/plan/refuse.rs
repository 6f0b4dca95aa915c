//! Every reason setup will not go ahead, in one place and in the order they are checked, all
//! before any step is planned (so nothing is ever half-planned, let alone half-done): the
//! system (board, GPU, state, pins), the 4K kernel install, the target kernel, and what the
//! target's plan would need (space, dpkg, a buildable kernel API, a bootable `config.txt`).

use super::super::probe::{Kernel, Probe};
use super::{Board, Facts, Manifest, Options, Refusal};

fn refuse(msg: impl Into<String>) -> Refusal {
    Refusal(msg.into())
}

/// What rules out this system, whatever the kernel.
pub(super) fn system(p: &Probe, m: &Manifest, o: &Options) -> Result<(), Refusal> {
    if p.board == Board::OtherPi {
        return Err(refuse(format!(
            "this board is a {:?}; pigpu setup provisions a Raspberry Pi 5, Pi 500 or Compute Module 5",
            p.model.as_deref().unwrap_or("different board")
        )));
    }
    if p.live && p.model.is_none() {
        return Err(refuse(
            "this machine has no /proc/device-tree/model: it is not a Raspberry Pi. Use --root DIR to provision a mounted Pi OS image from here",
        ));
    }
    if !p.gpus.is_empty() && p.gpus.iter().all(|g| !g.supported) {
        let list: Vec<String> = p
            .gpus
            .iter()
            .map(|g| format!("{} at {}", g.id, g.address))
            .collect();
        return Err(refuse(format!(
            "the NVIDIA GPU ({}) is older than Turing: it has no GSP, and the open kernel modules \
             cannot drive it on any machine. Nothing was changed. A Turing (RTX 20xx, T4, Quadro RTX) \
             or newer card is needed",
            list.join(", ")
        )));
    }
    if let Some(e) = &p.state_error {
        return Err(refuse(format!("{e}; move it away to start over")));
    }
    let unpinned = m.unpinned();
    if !unpinned.is_empty() && !o.accept_unpinned {
        return Err(refuse(format!(
            "manifest {} has artifacts without a pin: {}. Pin them (sha256 or tree id) or pass \
             --accept-unpinned to take what the server sends (its digest is printed and recorded)",
            m.origin,
            unpinned.join("; ")
        )));
    }
    Ok(())
}

/// Installing the 4K kernel needs a `config.txt` to point at it and dpkg to install it;
/// returns the `config.txt` path.
pub(super) fn kernel_4k(p: &Probe) -> Result<String, Refusal> {
    let config = p
        .config_path
        .clone()
        .ok_or_else(|| refuse("no config.txt under /boot/firmware or /boot in the root"))?;
    if p.packages.is_none() {
        return Err(refuse("no /var/lib/dpkg/status under the root: pigpu setup needs Raspberry Pi OS (Debian) to install the 4K kernel"));
    }
    Ok(config)
}

/// The target kernel must be installed, use 4K pages and match the manifest's architecture.
pub(super) fn kernel<'p>(p: &'p Probe, m: &Manifest, target: &str) -> Result<&'p Kernel, Refusal> {
    let kernel = p.kernel(target).ok_or_else(|| {
        refuse(format!(
            "kernel release {target} is not installed under /lib/modules ({})",
            p.kernels
                .iter()
                .map(|k| k.release.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if kernel.page_size.is_some_and(|s| s != 4096) {
        return Err(refuse(format!(
            "kernel {target} uses {}K pages; NVIDIA's modules need a 4K-page kernel (linux-image-rpi-v8)",
            kernel.page_size.unwrap_or(0) / 1024
        )));
    }
    if let Some(a) = &kernel.arch {
        if *a != m.arch {
            return Err(refuse(format!(
                "manifest {} is for {}, kernel {target} is {a}",
                m.origin, m.arch
            )));
        }
    }
    Ok(kernel)
}

/// What the plan for the target would need and this system lacks.
pub(super) fn target(f: &Facts) -> Result<(), Refusal> {
    let p = f.p;
    if (f.needs_sources || f.needs_userspace) && p.free_mib.is_some_and(|x| x < f.m.disk_mib) {
        return Err(refuse(format!(
            "only {} MiB free under {}; the build needs about {} MiB",
            p.free_mib.unwrap_or(0),
            p.root.display(),
            f.m.disk_mib
        )));
    }
    if !f.apt_packages.is_empty() && p.packages.is_none() {
        return Err(refuse(format!(
            "no /var/lib/dpkg/status under {}: cannot install {} (pigpu setup needs Raspberry Pi OS / Debian)",
            p.root.display(),
            f.apt_packages.join(", ")
        )));
    }
    if let Some(Err(why)) = &f.compat {
        return Err(Refusal(why.clone()));
    }
    match &f.boot_change {
        Some((path, settings, _))
            if settings.iter().any(|s| s == "kernel=kernel8.img") && !p.kernel8_present =>
        {
            // Pointing the firmware at a missing image would leave the Pi unbootable.
            Err(refuse(format!(
                "kernel8.img is missing beside {path}: the Pi would not boot with kernel=kernel8.img. \
                 Reinstall the 4K kernel (apt-get install --reinstall linux-image-rpi-v8) and run setup again"
            )))
        }
        _ if (p.config_path.is_none() || p.config_text.is_none()) && p.board != Board::Unknown => {
            Err(refuse(format!(
                "no config.txt under {}/boot/firmware or /boot",
                p.root.display()
            )))
        }
        _ => Ok(()),
    }
}
