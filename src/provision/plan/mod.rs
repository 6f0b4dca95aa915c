//! The plan: pure data computed from a [`Probe`], a [`Manifest`] and the [`Options`]. Every step
//! says what it will do and whether it needs a reboot; steps already done are listed as skipped
//! with the reason, so a second run plans nothing. Like doctor's checks, the plan is a table:
//! `refuse.rs` holds every refusal (a pre-Turing GPU, a board that is not a Pi 5, unpinned
//! artifacts, …), `facts.rs` works out once what the steps share (the target kernel, what is
//! done already), and `steps.rs` has one small function per step, listed in run order.

use serde::Serialize;
use thiserror::Error;

mod facts;
mod refuse;
mod steps;

use super::bootconfig::{self, Board};
use super::manifest::{Artifact, Manifest};
use super::probe::Probe;
use super::state;
use facts::Facts;

pub use super::state::Persist;

/// The choices the plan depends on (already answered: flags, prompts or defaults).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// PCIe generation to set for the external connector (`dtparam=pciex1_gen`).
    pub pcie_gen: u32,
    /// How the change survives kernel upgrades (hold the kernel, or DKMS).
    pub persist: Persist,
    /// Parallel jobs for the module build (`make -j`).
    pub jobs: usize,
    /// Go ahead with artifacts that have no pinned checksum.
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
    /// Download and verify the pinned sources and installer.
    Fetch {
        /// What to fetch, each with its pin.
        artifacts: Vec<Artifact>,
    },
    /// `apt-get install` packages the build needs.
    AptInstall {
        /// Debian package names.
        packages: Vec<String>,
    },
    /// Install the 4K kernel and its headers, then boot it.
    Kernel4k {
        /// The kernel packages to install.
        packages: Vec<String>,
        /// The `config.txt` path to edit.
        config: String,
        /// Its new text.
        text: String,
    },
    /// Unpack the driver source and apply the patch series, checking both against their pins.
    Prepare {
        /// The work directory (absolute path inside the root).
        work: String,
        /// Kernel release the build is for.
        release: String,
    },
    /// Build the kernel modules.
    Build {
        /// The work directory.
        work: String,
        /// Kernel release to build against.
        release: String,
        /// Parallel `make` jobs.
        jobs: usize,
        /// Build log path.
        log: String,
    },
    /// Install the built modules into `/lib/modules/<release>` and run depmod.
    InstallModules {
        /// The work directory.
        work: String,
        /// Kernel release to install for.
        release: String,
        /// Install log path.
        log: String,
    },
    /// Register the patched source with DKMS so it is rebuilt for new kernels.
    Dkms {
        /// The work directory holding the patched source.
        work: String,
    },
    /// `apt-mark hold` packages (the kernel, so an upgrade cannot break the modules).
    Hold {
        /// Debian package names.
        packages: Vec<String>,
    },
    /// Run NVIDIA's installer for the userspace driver only.
    Userspace {
        /// Arguments to the installer.
        args: Vec<String>,
    },
    /// Write whole files (module blacklist, apt pin, device-node options).
    WriteFiles {
        /// Path and text of each file.
        files: Vec<(String, String)>,
    },
    /// Write pigpu's block into `config.txt`.
    BootConfig {
        /// The `config.txt` path.
        path: String,
        /// Its new text.
        text: String,
    },
    /// Load kernel modules now (no reboot needed).
    LoadModules {
        /// Module names, in load order.
        names: Vec<String>,
    },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Stable id (`fetch`, `build`, …): what the journal and `--json` name it by.
    pub id: &'static str,
    /// What it does, in one line.
    pub action: String,
    /// The exact paths, versions and pins involved.
    pub detail: String,
    /// Whether a reboot is needed after it before the next step.
    pub reboot: bool,
    /// What the executor does for it.
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
    /// The step's id.
    pub id: &'static str,
    /// Why it is not needed.
    pub reason: String,
}

/// What `pigpu setup` will do on this system: the steps to run, those skipped, and notes.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The driver version the manifest pins.
    pub driver: String,
    /// The kernel release the modules are built for; `None` when no kernel was found.
    pub target: Option<String>,
    /// Why this kernel: how it was chosen, and what its headers say about the kernel API.
    pub target_reason: Vec<String>,
    /// Steps to run, in order.
    pub steps: Vec<Step>,
    /// Steps not needed on this system.
    pub skipped: Vec<Skipped>,
    /// What the user should know before going ahead: assumptions made, leftovers, conflicts.
    pub notes: Vec<String>,
    /// Set when a reboot pigpu asked for has not happened yet: nothing can proceed.
    pub blocked: Option<String>,
}

/// Why setup will not go ahead on this system.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("setup refused: {0}")]
pub struct Refusal(pub String);

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

/// Makes the plan: the refusals first (all in `refuse.rs`: `refuse::system`, then
/// `refuse::target` once the facts are known), then each step of [`steps::STEPS`] in order, each
/// adding itself or the reason it is skipped.
pub fn plan(p: &Probe, m: &Manifest, o: &Options) -> Result<Plan, Refusal> {
    refuse::system(p, m, o)?;
    let mut plan = Plan {
        driver: m.driver.clone(),
        target: p.target.clone(),
        target_reason: vec![p.target_reason.clone()],
        steps: Vec::new(),
        skipped: Vec::new(),
        notes: steps::system_notes(p),
        blocked: steps::blocked(p),
    };
    let Some(target) = p.target.as_deref() else {
        // Only 16K (or unknown) kernels: install the 4K one and boot it first.
        let boot = refuse::kernel_4k(p)?;
        plan.steps.push(steps::fetch_step(m));
        plan.steps.push(steps::kernel_4k(p, o, boot));
        return Ok(plan);
    };
    let facts = Facts::new(p, m, o, target)?;
    refuse::target(&facts)?;
    steps::kernel_reasons(&facts, &mut plan);
    for step in steps::STEPS {
        step(&facts, &mut plan);
    }
    steps::target_notes(&facts, &mut plan);
    Ok(plan)
}

impl Plan {
    fn run(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn skip(&mut self, id: &'static str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            id,
            reason: reason.into(),
        });
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
