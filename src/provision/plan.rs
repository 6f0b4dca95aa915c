//! The plan: pure data computed from a [`Probe`], a [`Manifest`] and the [`Options`]. Every step
//! says what it will do and whether it needs a reboot; steps already done are listed as skipped
//! with the reason, so a second run plans nothing. Early refusals (a pre-Turing GPU, a board
//! that is not a Pi 5, unpinned artifacts) happen here, before anything is touched.

use serde::Serialize;
use thiserror::Error;

use super::bootconfig::{self, Board};
use super::files;
use super::kapi;
use super::manifest::{Artifact, Manifest};
use super::probe::Probe;
use super::state::{self, Record};

/// How the modules survive kernel updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Persist {
    /// Register the sources with DKMS (installs `dkms` when missing); the default.
    Dkms,
    /// Hold the kernel packages so apt does not replace the kernel the modules were built for.
    Hold,
    /// Neither: rebuild by running `pigpu setup` again after a kernel update.
    None,
}

/// The choices the plan depends on (already answered: flags, prompts or defaults).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub pcie_gen: u32,
    pub persist: Persist,
    pub jobs: usize,
    pub accept_unpinned: bool,
    /// `apt-mark hold` the kernel packages (default on; always with `--persist hold`).
    pub hold_kernel: bool,
    /// Pin Debian's NVIDIA packages to priority -1 (default on).
    pub apt_pin: bool,
}

/// What a step does, with the data the executor needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    Fetch {
        artifacts: Vec<Artifact>,
    },
    AptInstall {
        packages: Vec<String>,
    },
    /// Install the 4K kernel and its headers, then boot it.
    Kernel4k {
        packages: Vec<String>,
        config: String,
        text: String,
    },
    Prepare {
        work: String,
        release: String,
    },
    Build {
        work: String,
        release: String,
        jobs: usize,
        log: String,
    },
    InstallModules {
        work: String,
        release: String,
        log: String,
    },
    Dkms {
        work: String,
    },
    Hold {
        packages: Vec<String>,
    },
    Userspace {
        args: Vec<String>,
    },
    WriteFiles {
        files: Vec<(String, String)>,
    },
    BootConfig {
        path: String,
        text: String,
    },
    LoadModules {
        names: Vec<String>,
    },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: &'static str,
    pub action: String,
    pub detail: String,
    pub reboot: bool,
    pub op: Op,
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Step", 4)?;
        st.serialize_field("id", self.id)?;
        st.serialize_field("action", &self.action)?;
        st.serialize_field("detail", &self.detail)?;
        st.serialize_field("reboot", &self.reboot)?;
        st.end()
    }
}

/// A step that is not needed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub id: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub driver: String,
    pub target: Option<String>,
    /// Why this kernel: how it was chosen, and what its headers say about the kernel API.
    pub target_reason: Vec<String>,
    pub steps: Vec<Step>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
    /// Set when a reboot pigpu asked for has not happened yet: nothing can proceed.
    pub blocked: Option<String>,
}

/// Why setup will not go ahead on this system.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("setup refused: {0}")]
pub struct Refusal(pub String);

fn refuse(msg: impl Into<String>) -> Refusal {
    Refusal(msg.into())
}

/// The settings pigpu's `config.txt` block must hold so the Pi boots the 4K kernel with the
/// external PCIe port on at the chosen generation, given what the rest of the file says.
pub fn boot_settings(text: &str, board: Board, pcie_gen: u32) -> Vec<String> {
    let base = bootconfig::remove_block(text);
    let eff = bootconfig::effective(&base, board);
    let mut out = Vec::new();
    if eff.kernel_image(board) != "kernel8.img" {
        out.push("kernel=kernel8.img".to_string());
    }
    // A CM5 IO board has the connector on already; the Pi 5 needs the parameter.
    if board != Board::Cm5 && !eff.pciex1 {
        out.push("dtparam=pciex1".to_string());
    }
    match (pcie_gen, eff.pciex1_gen) {
        (3, g) if g != Some(3) => out.push("dtparam=pciex1_gen=3".to_string()),
        (2, Some(g)) if g != 2 => out.push("dtparam=pciex1_gen=2".to_string()),
        _ => {}
    }
    out
}

/// The work directory for a driver version (system path).
pub fn work_dir(m: &Manifest) -> String {
    format!("{}/nvidia-{}", state::WORK_DIR, m.driver)
}

/// Makes the plan.
pub fn plan(p: &Probe, m: &Manifest, o: &Options) -> Result<Plan, Refusal> {
    let mut plan = Plan {
        driver: m.driver.clone(),
        target: p.target.clone(),
        target_reason: vec![p.target_reason.clone()],
        steps: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        blocked: None,
    };
    let skip = |plan: &mut Plan, id: &'static str, reason: String| {
        plan.skipped.push(Skipped { id, reason })
    };

    // --- Refusals, before anything else.
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
    for g in p.gpus.iter().filter(|g| !g.supported) {
        plan.notes.push(format!(
            "GPU {} at {} is pre-Turing and will not work; the others will",
            g.id, g.address
        ));
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
    if p.model.is_none() {
        plan.notes.push("board model unknown (no /proc/device-tree/model under the root): assuming a Raspberry Pi 5 family board".to_string());
    }
    if p.gpus.is_empty() {
        plan.notes.push(match &p.pci_error {
            Some(e) => format!("could not list PCI devices ({e}); modules will be installed but not loaded"),
            None => "no NVIDIA GPU on the PCI bus now: everything is installed, nothing is loaded; connect the card and run `pigpu doctor`".to_string(),
        });
    }
    if let Some(pr) = &p.state.pending_reboot {
        if p.boot_id.is_some() && pr.boot_id == p.boot_id {
            plan.blocked = Some(format!(
                "step {} asked for a reboot that has not happened yet: reboot, then run `pigpu setup` again",
                pr.step
            ));
        }
    }

    // --- The target kernel.
    let Some(target) = p.target.clone() else {
        // Only 16K (or unknown) kernels: install the 4K one and boot it first.
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
        let config = p
            .config_path
            .clone()
            .ok_or_else(|| refuse("no config.txt under /boot/firmware or /boot in the root"))?;
        let text = p.config_text.clone().unwrap_or_default();
        let settings = boot_settings(&text, p.board, o.pcie_gen);
        let new_text = bootconfig::set_block(&text, &settings);
        plan.steps.push(fetch_step(m));
        plan.steps.push(Step {
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
        });
        if p.packages.is_none() {
            return Err(refuse("no /var/lib/dpkg/status under the root: pigpu setup needs Raspberry Pi OS (Debian) to install the 4K kernel"));
        }
        return Ok(plan);
    };
    let kernel = p.kernel(&target).ok_or_else(|| {
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

    // --- What is done already.
    let work = work_dir(m);
    let modules_done = p.modules_intact;
    let userspace_done = p.userspace_files.iter().all(|(_, present)| *present);
    let dkms_done = p.dkms_registered;
    let hold_pkgs: Vec<String> = ["linux-image-rpi-v8", "linux-headers-rpi-v8"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("linux-image-{target}"),
            format!("linux-headers-{target}"),
        ])
        .filter(|pkg| p.installed(pkg))
        .collect();
    let hold_needed: Vec<String> = hold_pkgs
        .iter()
        .filter(|pkg| !p.held(pkg))
        .cloned()
        .collect();
    let userspace_deferred = !p.live && p.host_arch != m.arch;
    // An image of another architecture (an arm64 Pi image on an x86 build machine): the host's
    // make/gcc cannot build its modules, so they are built on the Pi (the first boot, or `pigpu
    // setup` there); the sources are still fetched, verified, patched and, with DKMS, put in
    // place here, so the Pi needs no network for them.
    let build_deferred = !p.live && !modules_done && p.host_arch != m.arch;
    let needs_sources =
        (!modules_done && !build_deferred) || (o.persist == Persist::Dkms && !dkms_done);
    let needs_userspace = !userspace_done && !userspace_deferred;
    if (needs_sources || needs_userspace) && p.free_mib.is_some_and(|f| f < m.disk_mib) {
        return Err(refuse(format!(
            "only {} MiB free under {}; the build needs about {} MiB",
            p.free_mib.unwrap_or(0),
            p.root.display(),
            m.disk_mib
        )));
    }

    // 1. fetch
    if needs_sources || needs_userspace {
        plan.steps.push(fetch_step(m));
    } else {
        skip(
            &mut plan,
            "fetch",
            "nothing left to install needs the downloads".to_string(),
        );
    }

    // 2. apt-deps
    let mut pkgs = Vec::new();
    if needs_sources && !p.installed("build-essential") {
        pkgs.push("build-essential".to_string());
    }
    if needs_sources && kernel.build_tree.is_none() {
        pkgs.push(format!("linux-headers-{target}"));
    }
    if o.persist == Persist::Dkms && !dkms_done && !p.installed("dkms") {
        pkgs.push("dkms".to_string());
    }
    if pkgs.is_empty() {
        skip(
            &mut plan,
            "apt-deps",
            "build tools, headers and dkms are installed".to_string(),
        );
    } else {
        if p.packages.is_none() {
            return Err(refuse(format!(
                "no /var/lib/dpkg/status under {}: cannot install {} (pigpu setup needs Raspberry Pi OS / Debian)",
                p.root.display(),
                pkgs.join(", ")
            )));
        }
        plan.steps.push(Step {
            id: "apt-deps",
            action: format!("apt-get install {}", pkgs.join(" ")),
            detail: "the compiler and make, the target kernel's build tree, and DKMS".to_string(),
            reboot: false,
            op: Op::AptInstall { packages: pkgs },
        });
    }

    // Kernel API changes the driver cannot build against: patched, or refused here.
    let mut compat_text = String::new();
    if needs_sources {
        match (&kernel.build_tree, &kernel.source_tree) {
            (Some(_), Some(source)) => {
                let d = kapi::decide(&m.driver, &m.compat, &target, &kernel.api)
                    .map_err(Refusal)?;
                plan.target_reason.extend(d.reasons.iter().cloned());
                if !d.apply.is_empty() {
                    compat_text = format!(
                        ". Then pigpu's compatibility patch(es) for this kernel: {}",
                        d.apply
                            .iter()
                            .map(|c| c.subject.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                }
                plan.target_reason
                    .push(format!("kernel {target}: headers in {}", source.display()));
            }
            _ => plan.target_reason.push(format!(
                "kernel {target}: its headers are not installed yet; their API is checked after apt-deps installs them, before the build"
            )),
        }
    }

    // 3–5. prepare, build, install
    if needs_sources {
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
        plan.steps.push(Step {
            id: "prepare",
            action: format!("unpack {} and apply {} patch(es)", m.source.name, m.series.patch.len()),
            detail: format!(
                "into {work}/src; source checked against tree {}, result against tree {}. Series: {series}{compat_text}",
                m.source.tree.as_deref().unwrap_or("(unpinned)"),
                m.series.result_tree.as_deref().unwrap_or("(per-patch sha256)")
            ),
            reboot: false,
            op: Op::Prepare {
                work: work.clone(),
                release: target.clone(),
            },
        });
    } else {
        skip(
            &mut plan,
            "prepare",
            "the modules are installed".to_string(),
        );
    }
    if build_deferred {
        let why = format!(
            "the {} modules cannot be built on this {} machine against --root; boot the Pi and run `pigpu setup` there (or let pigpu-first-boot.service do it)",
            m.arch, p.host_arch
        );
        skip(&mut plan, "build", why.clone());
        skip(&mut plan, "install-modules", why);
    } else if !modules_done {
        let log = format!("{}/build-{}-{}.log", state::LOG_DIR, m.driver, target);
        plan.steps.push(Step {
            id: "build",
            action: format!("make modules -j{} for {target}", o.jobs),
            detail: format!(
                "SYSSRC={} SYSOUT={} KERNEL_UNAME={target}; output in {log} (about 15–25 minutes on a Pi 5 for the real modules)",
                kernel.source_tree.as_ref().map_or(
                    format!("/lib/modules/{target}/source (after apt-deps)"),
                    |b| b.display().to_string()
                ),
                kernel.build_tree.as_ref().map_or(
                    format!("/lib/modules/{target}/build (after apt-deps)"),
                    |b| b.display().to_string()
                )
            ),
            reboot: false,
            op: Op::Build {
                work: work.clone(),
                release: target.clone(),
                jobs: o.jobs,
                log: log.clone(),
            },
        });
        plan.steps.push(Step {
            id: "install-modules",
            action: format!("install {} into /lib/modules/{target}, depmod", m.modules.join(", ")),
            detail: "make modules_install into a staging directory, then each file copied in with a backup of anything it replaces".to_string(),
            reboot: false,
            op: Op::InstallModules { work: work.clone(), release: target.clone(), log },
        });
    } else {
        skip(
            &mut plan,
            "build",
            format!("pigpu's modules for {target} are installed and unchanged"),
        );
        skip(
            &mut plan,
            "install-modules",
            format!("pigpu's modules for {target} are installed and unchanged"),
        );
    }
    for f in &p.foreign_modules {
        plan.notes.push(format!("{f} was not installed by pigpu; modules in updates/ or extra/ may take precedence over pigpu's"));
    }

    // 6. persistence
    match o.persist {
        Persist::Dkms if !dkms_done => plan.steps.push(Step {
            id: "dkms",
            action: format!("register nvidia/{} with DKMS", m.driver),
            detail: format!("copies the patched sources to /usr/src/nvidia-{} with a dkms.conf; DKMS rebuilds them for every new kernel", m.driver),
            reboot: false,
            op: Op::Dkms { work: work.clone() },
        }),
        Persist::Dkms => skip(&mut plan, "dkms", "already done".to_string()),
        Persist::None => skip(&mut plan, "dkms", "--persist none: run `pigpu setup` again after a kernel update".to_string()),
        Persist::Hold => {}
    }
    let hold = o.hold_kernel || o.persist == Persist::Hold;
    if !hold {
        skip(
            &mut plan,
            "kernel-hold",
            "--no-kernel-hold: apt may replace the kernel; run `pigpu setup` again after it does"
                .to_string(),
        );
    } else if !hold_needed.is_empty() {
        plan.steps.push(Step {
            id: "kernel-hold",
            action: format!("apt-mark hold {}", hold_needed.join(" ")),
            detail: "apt will not replace the kernel the modules were built for, so an upgrade cannot leave the Pi without modules (undo: pigpu setup --undo; opt out: --no-kernel-hold)".to_string(),
            reboot: false,
            op: Op::Hold { packages: hold_needed.clone() },
        });
    } else if hold_pkgs.is_empty() {
        skip(
            &mut plan,
            "kernel-hold",
            "no kernel packages installed to hold".to_string(),
        );
    } else {
        skip(
            &mut plan,
            "kernel-hold",
            format!("{} held", hold_pkgs.join(", ")),
        );
    }
    let pin = files::apt_pin();
    if !o.apt_pin {
        skip(
            &mut plan,
            "apt-pin",
            "--no-apt-pin: Debian's nvidia packages may replace NVIDIA's userspace".to_string(),
        );
    } else if p.owned_files.get(files::APT_PIN).and_then(|c| c.as_deref()) != Some(pin.as_str()) {
        plan.steps.push(Step {
            id: "apt-pin",
            action: format!("write {}", files::APT_PIN),
            detail: format!("Debian's {} at priority -1: apt never installs them over NVIDIA's userspace {} (the cause of `NVRM: API mismatch`; undo: pigpu setup --undo; opt out: --no-apt-pin)", files::APT_PINNED.join(", "), m.driver),
            reboot: false,
            op: Op::WriteFiles { files: vec![(files::APT_PIN.to_string(), pin)] },
        });
    } else {
        skip(&mut plan, "apt-pin", "already written".to_string());
    }

    // 7. userspace
    if userspace_done {
        skip(
            &mut plan,
            "userspace",
            format!("NVIDIA userspace {} is installed", m.driver),
        );
    } else if userspace_deferred {
        skip(&mut plan, "userspace", format!(
            "the {} installer cannot run on this {} machine against --root; boot the Pi and run `pigpu setup` there to finish",
            m.arch, p.host_arch
        ));
    } else {
        plan.steps.push(Step {
            id: "userspace",
            action: format!("install NVIDIA userspace {} ({})", m.driver, m.userspace.args.join(" ")),
            detail: "libraries, nvidia-smi, the Vulkan ICD and the GSP firmware of exactly the module version".to_string(),
            reboot: false,
            op: Op::Userspace { args: m.userspace.args.clone() },
        });
    }

    // 8–9. small files
    let differs =
        |path: &str, want: &str| p.owned_files.get(path).and_then(|c| c.as_deref()) != Some(want);
    let bl = files::blacklist();
    if differs(files::BLACKLIST, &bl) {
        plan.steps.push(Step {
            id: "blacklist-nouveau",
            action: format!("write {}", files::BLACKLIST),
            detail: "blacklist nouveau; options nouveau modeset=0".to_string(),
            reboot: false,
            op: Op::WriteFiles {
                files: vec![(files::BLACKLIST.to_string(), bl)],
            },
        });
    } else {
        skip(
            &mut plan,
            "blacklist-nouveau",
            "already written".to_string(),
        );
    }
    let nodes: Vec<(String, String)> = files::device_nodes(m, p.video_gid)
        .into_iter()
        .filter(|(path, want)| differs(path, want))
        .collect();
    if nodes.is_empty() {
        skip(&mut plan, "device-nodes", "already written".to_string());
    } else {
        plan.steps.push(Step {
            id: "device-nodes",
            action: format!("write {}", nodes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")),
            detail: format!("/dev/nvidia* as root:video (gid {}) 0660, created when the modules load; {} loaded at boot", p.video_gid, m.load.join(", ")),
            reboot: false,
            op: Op::WriteFiles { files: nodes },
        });
    }

    // 10. boot config
    let mut reboot_ahead = false;
    match (&p.config_path, &p.config_text) {
        (Some(path), Some(text)) => {
            let settings = boot_settings(text, p.board, o.pcie_gen);
            let new_text = bootconfig::set_block(text, &settings);
            if new_text != *text {
                if settings.iter().any(|s| s == "kernel=kernel8.img") && !p.kernel8_present {
                    // Pointing the firmware at a missing image would leave the Pi unbootable.
                    return Err(refuse(format!(
                        "kernel8.img is missing beside {path}: the Pi would not boot with kernel=kernel8.img. \
                         Reinstall the 4K kernel (apt-get install --reinstall linux-image-rpi-v8) and run setup again"
                    )));
                }
                reboot_ahead = true;
                plan.steps.push(Step {
                    id: "boot-config",
                    action: format!("edit {path}: {}", if settings.is_empty() { "remove pigpu's block".to_string() } else { settings.join(", ") }),
                    detail: format!(
                        "now boots {}{}; pigpu's lines go in one marked [pi5] block at the end, the rest of the file is kept as it is",
                        p.kernel_image,
                        if p.boot.uncertain.is_empty() { String::new() } else { format!(" (not evaluated: {})", p.boot.uncertain.join("; ")) }
                    ),
                    reboot: true,
                    op: Op::BootConfig { path: path.clone(), text: new_text },
                });
            } else {
                skip(
                    &mut plan,
                    "boot-config",
                    format!("boots kernel8.img, PCIe Gen {} set", o.pcie_gen),
                );
            }
        }
        _ => {
            if p.board == Board::Unknown {
                skip(
                    &mut plan,
                    "boot-config",
                    "no config.txt under /boot/firmware or /boot".to_string(),
                );
            } else {
                return Err(refuse(format!(
                    "no config.txt under {}/boot/firmware or /boot",
                    p.root.display()
                )));
            }
        }
    }

    // 11. load
    let to_load: Vec<String> = m.load.iter().filter(|n| !p.is_loaded(n)).cloned().collect();
    let supported_gpu = p.gpus.iter().any(|g| g.supported);
    if p.running_kernel.as_deref() != Some(target.as_str()) || reboot_ahead {
        skip(
            &mut plan,
            "load-modules",
            match &p.running_kernel {
                Some(r) if !reboot_ahead => {
                    format!("the running kernel is {r}, not {target}: the modules load at boot")
                }
                Some(_) => format!("after the reboot into {target}: run `pigpu setup` again"),
                None => "the root is not a running system: the modules load at boot".to_string(),
            },
        );
    } else if !supported_gpu {
        skip(
            &mut plan,
            "load-modules",
            "no supported NVIDIA GPU on the bus".to_string(),
        );
    } else if to_load.is_empty() {
        skip(
            &mut plan,
            "load-modules",
            format!("{} loaded", m.load.join(", ")),
        );
    } else {
        plan.steps.push(Step {
            id: "load-modules",
            action: format!("load {}", to_load.join(", ")),
            detail: format!("the running kernel is {target}"),
            reboot: false,
            op: Op::LoadModules { names: to_load },
        });
    }
    if p.state
        .has(|r| matches!(r, Record::Modules { driver, .. } if *driver != m.driver))
    {
        plan.notes.push("pigpu installed another driver version before; `pigpu setup --undo` first to remove it cleanly".to_string());
    }
    Ok(plan)
}

fn fetch_step(m: &Manifest) -> Step {
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

impl Plan {
    /// The plan as `{"steps": [{"id", "action", "detail", "reboot"}], …}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "driver": self.driver,
            "target": self.target,
            "target_reason": self.target_reason,
            "steps": self.steps,
            "skipped": self.skipped,
            "notes": self.notes,
            "blocked": self.blocked,
        })
    }

    /// Human-readable plan.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Plan: NVIDIA {} for kernel {}\n",
            self.driver,
            self.target
                .as_deref()
                .unwrap_or("(the 4K kernel, after it is installed)")
        );
        for r in &self.target_reason {
            s.push_str(&format!("  why: {r}\n"));
        }
        if let Some(b) = &self.blocked {
            s.push_str(&format!("  blocked: {b}\n"));
        }
        if self.steps.is_empty() {
            s.push_str("  nothing to do: everything is in place\n");
        }
        for (i, st) in self.steps.iter().enumerate() {
            s.push_str(&format!(
                "  {:>2}. {:<17} {}{}\n      {}\n",
                i + 1,
                st.id,
                st.action,
                if st.reboot { "  [reboot]" } else { "" },
                st.detail
            ));
        }
        if !self.skipped.is_empty() {
            s.push_str("  already done / not needed:\n");
            for k in &self.skipped {
                s.push_str(&format!("      {:<17} {}\n", k.id, k.reason));
            }
        }
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }
}
