//! One small function per step, in the order they run ([`STEPS`]). Each reads the shared
//! [`Facts`] and adds its step to the plan, or the reason it is not needed; none can refuse
//! (`refuse.rs` has said no already, if it was going to).

use super::super::files;
use super::super::probe::Probe;
use super::super::state::Record;
use super::{bootconfig, Facts, Manifest, Op, Options, Persist, Plan, Step};

/// The steps for a target kernel, in run order.
pub(super) const STEPS: &[fn(&Facts, &mut Plan)] = &[
    fetch,
    apt_deps,
    prepare,
    build_and_install,
    dkms,
    kernel_hold,
    apt_pin,
    userspace,
    blacklist_nouveau,
    device_nodes,
    boot_config,
    load_modules,
];

/// Notes about the system, whatever the kernel.
pub(super) fn system_notes(p: &Probe) -> Vec<String> {
    let mut notes = Vec::new();
    for g in p.gpus.iter().filter(|g| !g.supported) {
        notes.push(format!(
            "GPU {} at {} is pre-Turing and will not work; the others will",
            g.id, g.address
        ));
    }
    if p.model.is_none() {
        notes.push("board model unknown (no /proc/device-tree/model under the root): assuming a Raspberry Pi 5 family board".to_string());
    }
    if p.gpus.is_empty() {
        notes.push(match &p.pci_error {
            Some(e) => format!("could not list PCI devices ({e}); modules will be installed but not loaded"),
            None => "no NVIDIA GPU on the PCI bus now: everything is installed, nothing is loaded; connect the card and run `pigpu doctor`".to_string(),
        });
    }
    notes
}

/// Set when a reboot pigpu asked for has not happened yet.
pub(super) fn blocked(p: &Probe) -> Option<String> {
    let pr = p.state.pending_reboot.as_ref()?;
    (p.boot_id.is_some() && pr.boot_id == p.boot_id).then(|| {
        format!(
            "step {} asked for a reboot that has not happened yet: reboot, then run `pigpu setup` again",
            pr.step
        )
    })
}

/// Notes about the target's modules, after the steps.
pub(super) fn target_notes(f: &Facts, plan: &mut Plan) {
    if f.p
        .state
        .has(|r| matches!(r, Record::Modules { driver, .. } if *driver != f.m.driver))
    {
        plan.notes.push("pigpu installed another driver version before; `pigpu setup --undo` first to remove it cleanly".to_string());
    }
}

/// Why this kernel: what its headers say about the kernel API (when the sources are needed).
pub(super) fn kernel_reasons(f: &Facts, plan: &mut Plan) {
    if !f.needs_sources {
        return;
    }
    let target = f.target;
    match (&f.compat, &f.kernel.source_tree) {
        (Some(Ok(d)), Some(source)) => {
            plan.target_reason.extend(d.reasons.iter().cloned());
            plan.target_reason
                .push(format!("kernel {target}: headers in {}", source.display()));
        }
        _ => plan.target_reason.push(format!(
            "kernel {target}: its headers are not installed yet; their API is checked after apt-deps installs them, before the build"
        )),
    }
}

pub(super) fn fetch_step(m: &Manifest) -> Step {
    let arts = m.artifacts();
    let list = arts
        .iter()
        .map(|a| format!("{} ({})", a.what, a.location))
        .collect::<Vec<_>>()
        .join("; ");
    Step {
        id: "fetch",
        action: format!(
            "download and verify {} files (cached after the first run)",
            arts.len()
        ),
        detail: list,
        reboot: false,
        op: Op::Fetch { artifacts: arts },
    }
}

/// The 4K kernel and the `config.txt` that boots it, when the system has only 16K kernels.
pub(super) fn kernel_4k(p: &Probe, o: &Options, config: String) -> Step {
    let current = p
        .kernels
        .iter()
        .map(|k| {
            format!(
                "{} ({})",
                k.release,
                k.page_size
                    .map_or("page size unknown".to_string(), |s| format!(
                        "{}K pages",
                        s / 1024
                    ))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let text = p.config_text.clone().unwrap_or_default();
    let settings = super::boot_settings(&text, p.board, o.pcie_gen);
    let new_text = bootconfig::set_block(&text, &settings);
    Step {
        id: "kernel-4k",
        action: "install the 4K-page kernel and its headers, boot it".to_string(),
        detail: format!(
            "NVIDIA's modules need 4K pages; this system has {}. apt-get install linux-image-rpi-v8 \
             linux-headers-rpi-v8, and in {config}: {}. The remaining steps are planned after the reboot.",
            if current.is_empty() { "no kernel under /lib/modules".to_string() } else { current },
            settings.join(", ")
        ),
        reboot: true,
        op: Op::Kernel4k {
            packages: vec!["linux-image-rpi-v8".to_string(), "linux-headers-rpi-v8".to_string()],
            config,
            text: new_text,
        },
    }
}

fn fetch(f: &Facts, plan: &mut Plan) {
    if f.needs_sources || f.needs_userspace {
        plan.run(fetch_step(f.m));
    } else {
        plan.skip("fetch", "nothing left to install needs the downloads");
    }
}

fn apt_deps(f: &Facts, plan: &mut Plan) {
    if f.apt_packages.is_empty() {
        plan.skip("apt-deps", "build tools, headers and dkms are installed");
    } else {
        plan.run(Step {
            id: "apt-deps",
            action: format!("apt-get install {}", f.apt_packages.join(" ")),
            detail: "the compiler and make, the target kernel's build tree, and DKMS".to_string(),
            reboot: false,
            op: Op::AptInstall {
                packages: f.apt_packages.clone(),
            },
        });
    }
}

fn prepare(f: &Facts, plan: &mut Plan) {
    if !f.needs_sources {
        plan.skip("prepare", "the modules are installed");
        return;
    }
    let m = f.m;
    let series = if m.series.patch.is_empty() {
        "no patches".to_string()
    } else {
        m.series
            .patch
            .iter()
            .map(|x| match &x.commit {
                Some(c) => format!("{} {}", &c[..12], x.subject),
                None => x.subject.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let compat_text = match &f.compat {
        Some(Ok(d)) if !d.apply.is_empty() => format!(
            ". Then pigpu's compatibility patch(es) for this kernel: {}",
            d.apply
                .iter()
                .map(|c| c.subject.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => String::new(),
    };
    plan.run(Step {
        id: "prepare",
        action: format!("unpack {} and apply {} patch(es)", m.source.name, m.series.patch.len()),
        detail: format!(
            "into {}/src; source checked against tree {}, result against tree {}. Series: {series}{compat_text}",
            f.work,
            m.source.tree.as_deref().unwrap_or("(unpinned)"),
            m.series.result_tree.as_deref().unwrap_or("(per-patch sha256)")
        ),
        reboot: false,
        op: Op::Prepare {
            work: f.work.clone(),
            release: f.target.to_string(),
        },
    });
}

fn build_and_install(f: &Facts, plan: &mut Plan) {
    let (m, target) = (f.m, f.target);
    if f.build_deferred {
        let why = format!(
            "the {} modules cannot be built on this {} machine against --root; boot the Pi and run `pigpu setup` there (or let pigpu-first-boot.service do it)",
            m.arch, f.p.host_arch
        );
        plan.skip("build", why.clone());
        plan.skip("install-modules", why);
    } else if !f.modules_done {
        let log = format!(
            "{}/build-{}-{}.log",
            super::state::LOG_DIR,
            m.driver,
            target
        );
        let tree = |t: &Option<std::path::PathBuf>, name: &str| {
            t.as_ref().map_or(
                format!("/lib/modules/{target}/{name} (after apt-deps)"),
                |b| b.display().to_string(),
            )
        };
        plan.run(Step {
            id: "build",
            action: format!("make modules -j{} for {target}", f.o.jobs),
            detail: format!(
                "SYSSRC={} SYSOUT={} KERNEL_UNAME={target}; output in {log} (about 15–25 minutes on a Pi 5 for the real modules)",
                tree(&f.kernel.source_tree, "source"),
                tree(&f.kernel.build_tree, "build"),
            ),
            reboot: false,
            op: Op::Build {
                work: f.work.clone(),
                release: target.to_string(),
                jobs: f.o.jobs,
                log: log.clone(),
            },
        });
        plan.run(Step {
            id: "install-modules",
            action: format!("install {} into /lib/modules/{target}, depmod", m.modules.join(", ")),
            detail: "make modules_install into a staging directory, then each file copied in with a backup of anything it replaces".to_string(),
            reboot: false,
            op: Op::InstallModules { work: f.work.clone(), release: target.to_string(), log },
        });
    } else {
        let why = format!("pigpu's modules for {target} are installed and unchanged");
        plan.skip("build", why.clone());
        plan.skip("install-modules", why);
    }
    for x in &f.p.foreign_modules {
        plan.notes.push(format!("{x} was not installed by pigpu; modules in updates/ or extra/ may take precedence over pigpu's"));
    }
}

fn dkms(f: &Facts, plan: &mut Plan) {
    match f.o.persist {
        Persist::Dkms if !f.dkms_done => plan.run(Step {
            id: "dkms",
            action: format!("register nvidia/{} with DKMS", f.m.driver),
            detail: format!("copies the patched sources to /usr/src/nvidia-{} with a dkms.conf; DKMS rebuilds them for every new kernel", f.m.driver),
            reboot: false,
            op: Op::Dkms { work: f.work.clone() },
        }),
        Persist::Dkms => plan.skip("dkms", "already done"),
        Persist::None => plan.skip("dkms", "--persist none: run `pigpu setup` again after a kernel update"),
        Persist::Hold => {}
    }
}

fn kernel_hold(f: &Facts, plan: &mut Plan) {
    if !(f.o.hold_kernel || f.o.persist == Persist::Hold) {
        plan.skip(
            "kernel-hold",
            "--no-kernel-hold: apt may replace the kernel; run `pigpu setup` again after it does",
        );
    } else if !f.hold_needed.is_empty() {
        plan.run(Step {
            id: "kernel-hold",
            action: format!("apt-mark hold {}", f.hold_needed.join(" ")),
            detail: "apt will not replace the kernel the modules were built for, so an upgrade cannot leave the Pi without modules (undo: pigpu setup --undo; opt out: --no-kernel-hold)".to_string(),
            reboot: false,
            op: Op::Hold { packages: f.hold_needed.clone() },
        });
    } else if f.hold_pkgs.is_empty() {
        plan.skip("kernel-hold", "no kernel packages installed to hold");
    } else {
        plan.skip("kernel-hold", format!("{} held", f.hold_pkgs.join(", ")));
    }
}

fn apt_pin(f: &Facts, plan: &mut Plan) {
    let pin = files::apt_pin();
    if !f.o.apt_pin {
        plan.skip(
            "apt-pin",
            "--no-apt-pin: Debian's nvidia packages may replace NVIDIA's userspace",
        );
    } else if f.differs(files::APT_PIN, &pin) {
        plan.run(Step {
            id: "apt-pin",
            action: format!("write {}", files::APT_PIN),
            detail: format!("Debian's {} at priority -1: apt never installs them over NVIDIA's userspace {} (the cause of `NVRM: API mismatch`; undo: pigpu setup --undo; opt out: --no-apt-pin)", files::APT_PINNED.join(", "), f.m.driver),
            reboot: false,
            op: Op::WriteFiles { files: vec![(files::APT_PIN.to_string(), pin)] },
        });
    } else {
        plan.skip("apt-pin", "already written");
    }
}

fn userspace(f: &Facts, plan: &mut Plan) {
    let m = f.m;
    if f.userspace_done {
        plan.skip(
            "userspace",
            format!("NVIDIA userspace {} is installed", m.driver),
        );
    } else if f.userspace_deferred {
        plan.skip("userspace", format!(
            "the {} installer cannot run on this {} machine against --root; boot the Pi and run `pigpu setup` there to finish",
            m.arch, f.p.host_arch
        ));
    } else {
        plan.run(Step {
            id: "userspace",
            action: format!("install NVIDIA userspace {} ({})", m.driver, m.userspace.args.join(" ")),
            detail: "libraries, nvidia-smi, the Vulkan ICD and the GSP firmware of exactly the module version".to_string(),
            reboot: false,
            op: Op::Userspace { args: m.userspace.args.clone() },
        });
    }
}

fn blacklist_nouveau(f: &Facts, plan: &mut Plan) {
    let bl = files::blacklist();
    if f.differs(files::BLACKLIST, &bl) {
        plan.run(Step {
            id: "blacklist-nouveau",
            action: format!("write {}", files::BLACKLIST),
            detail: "blacklist nouveau; options nouveau modeset=0".to_string(),
            reboot: false,
            op: Op::WriteFiles {
                files: vec![(files::BLACKLIST.to_string(), bl)],
            },
        });
    } else {
        plan.skip("blacklist-nouveau", "already written");
    }
}

fn device_nodes(f: &Facts, plan: &mut Plan) {
    let nodes: Vec<(String, String)> = files::device_nodes(f.m, f.p.video_gid)
        .into_iter()
        .filter(|(path, want)| f.differs(path, want))
        .collect();
    if nodes.is_empty() {
        plan.skip("device-nodes", "already written");
    } else {
        plan.run(Step {
            id: "device-nodes",
            action: format!("write {}", nodes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")),
            detail: format!("/dev/nvidia* as root:video (gid {}) 0660, created when the modules load; {} loaded at boot", f.p.video_gid, f.m.load.join(", ")),
            reboot: false,
            op: Op::WriteFiles { files: nodes },
        });
    }
}

fn boot_config(f: &Facts, plan: &mut Plan) {
    let p = f.p;
    match &f.boot_change {
        Some((path, settings, new_text)) => plan.run(Step {
            id: "boot-config",
            action: format!("edit {path}: {}", if settings.is_empty() { "remove pigpu's block".to_string() } else { settings.join(", ") }),
            detail: format!(
                "now boots {}{}; pigpu's lines go in one marked [pi5] block at the end, the rest of the file is kept as it is",
                p.kernel_image,
                if p.boot.uncertain.is_empty() { String::new() } else { format!(" (not evaluated: {})", p.boot.uncertain.join("; ")) }
            ),
            reboot: true,
            op: Op::BootConfig { path: path.clone(), text: new_text.clone() },
        }),
        None if p.config_path.is_some() && p.config_text.is_some() => plan.skip(
            "boot-config",
            format!("boots kernel8.img, PCIe Gen {} set", f.o.pcie_gen),
        ),
        // (A Pi board without a config.txt was refused.)
        None => plan.skip("boot-config", "no config.txt under /boot/firmware or /boot"),
    }
}

fn load_modules(f: &Facts, plan: &mut Plan) {
    let (p, target) = (f.p, f.target);
    let reboot_ahead = f.boot_change.is_some();
    let to_load: Vec<String> =
        f.m.load
            .iter()
            .filter(|n| !p.is_loaded(n))
            .cloned()
            .collect();
    if p.running_kernel.as_deref() != Some(target) || reboot_ahead {
        plan.skip(
            "load-modules",
            match &p.running_kernel {
                Some(r) if !reboot_ahead => {
                    format!("the running kernel is {r}, not {target}: the modules load at boot")
                }
                Some(_) => format!("after the reboot into {target}: run `pigpu setup` again"),
                None => "the root is not a running system: the modules load at boot".to_string(),
            },
        );
    } else if !p.gpus.iter().any(|g| g.supported) {
        plan.skip("load-modules", "no supported NVIDIA GPU on the bus");
    } else if to_load.is_empty() {
        plan.skip("load-modules", format!("{} loaded", f.m.load.join(", ")));
    } else {
        plan.run(Step {
            id: "load-modules",
            action: format!("load {}", to_load.join(", ")),
            detail: format!("the running kernel is {target}"),
            reboot: false,
            op: Op::LoadModules { names: to_load },
        });
    }
}
