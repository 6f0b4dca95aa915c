//! What the steps of a plan share, worked out once from the probe for the target kernel: what
//! is installed already, what this machine can build or run for the root, the packages and
//! compatibility patches needed, and the `config.txt` the boot-config step would write.

use super::super::manifest::{decide_compat, Decision, Manifest};
use super::super::probe::{Kernel, Probe};
use super::{bootconfig, refuse, work_dir, Options, Persist, Refusal};

pub(super) struct Facts<'a> {
    pub p: &'a Probe,
    pub m: &'a Manifest,
    pub o: &'a Options,
    pub target: &'a str,
    pub kernel: &'a Kernel,
    /// The work directory (system path).
    pub work: String,
    pub modules_done: bool,
    pub userspace_done: bool,
    pub dkms_done: bool,
    /// An image of another architecture (an arm64 Pi image on an x86 build machine): the
    /// host's make/gcc cannot build its modules, so they are built on the Pi (the first boot,
    /// or `pigpu setup` there); the sources are still fetched, verified, patched and, with
    /// DKMS, put in place here, so the Pi needs no network for them.
    pub build_deferred: bool,
    pub userspace_deferred: bool,
    pub needs_sources: bool,
    pub needs_userspace: bool,
    /// Kernel packages installed (held or not), and those not held yet.
    pub hold_pkgs: Vec<String>,
    pub hold_needed: Vec<String>,
    /// What apt-deps installs.
    pub apt_packages: Vec<String>,
    /// The compatibility patches for the target's headers, when they are installed and the
    /// sources are needed (an error is the refusal's text).
    pub compat: Option<Result<Decision<'a>, String>>,
    /// The boot-config change: (path, settings, new text), when the file changes.
    pub boot_change: Option<(String, Vec<String>, String)>,
}

impl<'a> Facts<'a> {
    pub fn new(
        p: &'a Probe,
        m: &'a Manifest,
        o: &'a Options,
        target: &'a str,
    ) -> Result<Facts<'a>, Refusal> {
        let kernel = refuse::kernel(p, m, target)?;
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
        let hold_needed = hold_pkgs
            .iter()
            .filter(|pkg| !p.held(pkg))
            .cloned()
            .collect();
        let userspace_deferred = !p.live && p.host_arch != m.arch;
        let build_deferred = !p.live && !modules_done && p.host_arch != m.arch;
        let needs_sources =
            (!modules_done && !build_deferred) || (o.persist == Persist::Dkms && !dkms_done);
        let needs_userspace = !userspace_done && !userspace_deferred;
        let mut apt_packages = Vec::new();
        if needs_sources && !p.installed("build-essential") {
            apt_packages.push("build-essential".to_string());
        }
        if needs_sources && kernel.build_tree.is_none() {
            apt_packages.push(format!("linux-headers-{target}"));
        }
        if o.persist == Persist::Dkms && !dkms_done && !p.installed("dkms") {
            apt_packages.push("dkms".to_string());
        }
        let compat = match (&kernel.build_tree, &kernel.source_tree) {
            (Some(_), Some(_)) if needs_sources => {
                Some(decide_compat(&m.driver, &m.compat, target, &kernel.api))
            }
            _ => None,
        };
        let boot_change = match (&p.config_path, &p.config_text) {
            (Some(path), Some(text)) => {
                let settings = super::boot_settings(text, p.board, o.pcie_gen);
                let new_text = bootconfig::set_block(text, &settings);
                (new_text != *text).then(|| (path.clone(), settings, new_text))
            }
            _ => None,
        };
        Ok(Facts {
            p,
            m,
            o,
            target,
            kernel,
            work: work_dir(m),
            modules_done,
            userspace_done,
            dkms_done,
            build_deferred,
            userspace_deferred,
            needs_sources,
            needs_userspace,
            hold_pkgs,
            hold_needed,
            apt_packages,
            compat,
            boot_change,
        })
    }

    /// Whether a file pigpu owns differs from what it would write.
    pub fn differs(&self, path: &str, want: &str) -> bool {
        self.p.owned_files.get(path).and_then(|c| c.as_deref()) != Some(want)
    }
}
