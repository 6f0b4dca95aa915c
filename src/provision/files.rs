//! The small configuration files pigpu owns on the target (nouveau blacklist, module options,
//! device-node rules, boot-time module loading, the DKMS recipe), as pure text so the plan can
//! compare them with what is on disk and a re-run rewrites nothing.

use super::manifest::Manifest;

/// Keeps nouveau off the card (it binds first and breaks the NVIDIA driver's probe).
pub const BLACKLIST: &str = "/etc/modprobe.d/pigpu-blacklist-nouveau.conf";
/// Device-node ownership and mode for the NVIDIA driver.
const OPTIONS: &str = "/etc/modprobe.d/pigpu-nvidia.conf";
/// Creates `/dev/nvidia*` when the modules load.
const UDEV_RULES: &str = "/etc/udev/rules.d/70-pigpu-nvidia.rules";
/// Loads the compute modules at boot.
const MODULES_LOAD: &str = "/etc/modules-load.d/pigpu-nvidia.conf";

/// Keeps Debian's NVIDIA packages from replacing NVIDIA's userspace of the module's version.
pub const APT_PIN: &str = "/etc/apt/preferences.d/pigpu-nvidia.pref";
/// The packages pinned away (apt_preferences(5) globs).
pub const APT_PINNED: &[&str] = &["nvidia-*", "libnvidia-*", "libcuda1", "firmware-nvidia-gsp"];

/// The `video` group's id on Raspberry Pi OS / Debian when `/etc/group` does not say.
const DEFAULT_VIDEO_GID: u32 = 44;

/// Every configuration file setup may write (not the module files or the userspace).
pub fn owned_paths(_m: &Manifest) -> Vec<String> {
    [BLACKLIST, OPTIONS, UDEV_RULES, MODULES_LOAD, APT_PIN]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The APT pin: priority -1 means apt never installs these packages from any source, so
/// Debian's `nvidia-*` libraries (another version) cannot replace the userspace installed by
/// NVIDIA's `.run` (the cause of `NVRM: API mismatch`).
pub fn apt_pin() -> String {
    format!(
        "# Written by `pigpu setup`: NVIDIA's userspace comes from its .run installer, matching the\n\
         # kernel modules exactly; Debian's NVIDIA packages must never replace it.\n\
         Package: {}\n\
         Pin: release *\n\
         Pin-Priority: -1\n",
        APT_PINNED.join(" ")
    )
}

/// The text of `/etc/modprobe.d/` blacklist file that keeps nouveau off the card.
pub fn blacklist() -> String {
    "# Written by `pigpu setup`: nouveau must not bind the NVIDIA card (the open NVIDIA modules drive it).\n\
     blacklist nouveau\n\
     options nouveau modeset=0\n"
        .to_string()
}

/// The device-node files: (path, contents).
pub fn device_nodes(m: &Manifest, video_gid: u32) -> Vec<(String, String)> {
    let options = format!(
        "# Written by `pigpu setup`: /dev/nvidia* owned by root:video (gid {video_gid}), mode 0660,\n\
         # so members of `video` (the Pi's default user is one) can use the GPU without root.\n\
         options nvidia NVreg_DeviceFileUID=0 NVreg_DeviceFileGID={video_gid} NVreg_DeviceFileMode=0660\n"
    );
    // udev runs RUN+= programs with arguments directly (no shell).
    let udev = "# Written by `pigpu setup`: create /dev/nvidia0.., /dev/nvidiactl and /dev/nvidia-uvm*\n\
                # when the modules load (nvidia-modprobe comes with NVIDIA's userspace).\n\
                ACTION==\"add\", SUBSYSTEM==\"module\", KERNEL==\"nvidia\", RUN+=\"/usr/bin/nvidia-modprobe -c0\"\n\
                ACTION==\"add\", SUBSYSTEM==\"module\", KERNEL==\"nvidia_uvm\", RUN+=\"/usr/bin/nvidia-modprobe -c0 -u\"\n"
        .to_string();
    let mut load =
        String::from("# Written by `pigpu setup`: the NVIDIA compute modules, loaded at boot.\n");
    for name in &m.load {
        load.push_str(name);
        load.push('\n');
    }
    vec![
        (OPTIONS.to_string(), options),
        (UDEV_RULES.to_string(), udev),
        (MODULES_LOAD.to_string(), load),
    ]
}

/// `video`'s gid from an `/etc/group` text.
pub fn video_gid(group: Option<&str>) -> u32 {
    group
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some("video")).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
            })
        })
        .unwrap_or(DEFAULT_VIDEO_GID)
}

/// The DKMS recipe for the patched tree in `/usr/src/nvidia-<version>`: DKMS rebuilds the same
/// sources for every new kernel with NVIDIA's own Makefile. Only `KERNEL_UNAME` is passed, as
/// NVIDIA's own dkms.conf does: the Makefile then finds the kernel's source tree
/// (`/lib/modules/<rel>/source`, the `-common` half of split headers) and its output tree
/// (`…/build`) itself; `SYSSRC=${kernel_source_dir}` would name only the output half of split
/// headers, and every conftest would fail (`stdarg.h: No such file or directory`). `make` is
/// quoted so DKMS does not add `KERNELRELEASE=` (which makes NVIDIA's Makefile act as Kbuild).
/// The `${…}` and `$(nproc)` are DKMS's (it evaluates MAKE[0] in its shell), not pigpu's.
pub fn dkms_conf(m: &Manifest) -> String {
    let dir = if m.make_dir.is_empty() {
        String::new()
    } else {
        format!(" -C {}", m.make_dir)
    };
    let extra: String = m.make_args.iter().map(|a| format!(" {a}")).collect();
    let mut s = format!(
        "# Written by `pigpu setup` for {summary}\n\
         PACKAGE_NAME=\"nvidia\"\n\
         PACKAGE_VERSION=\"{ver}\"\n\
         AUTOINSTALL=\"yes\"\n\
         BUILD_EXCLUSIVE_ARCH=\"{arch}\"\n\
         MAKE[0]=\"'make'{dir} -j$(nproc) modules KERNEL_UNAME=${{kernelver}}{extra}\"\n\
         CLEAN=\"'make'{dir} clean\"\n",
        summary = m.summary,
        ver = m.driver,
        arch = m.arch,
    );
    for (i, name) in m.modules.iter().enumerate() {
        s.push_str(&format!(
            "BUILT_MODULE_NAME[{i}]=\"{name}\"\nBUILT_MODULE_LOCATION[{i}]=\"{dir}/\"\nDEST_MODULE_LOCATION[{i}]=\"/updates/dkms\"\n",
            dir = m.modules_dir
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_gid_from_group_file() {
        assert_eq!(video_gid(Some("root:x:0:\nvideo:x:44:pi\n")), 44);
        assert_eq!(video_gid(Some("video:x:985:\n")), 985);
        assert_eq!(video_gid(None), DEFAULT_VIDEO_GID);
    }

    #[test]
    fn dkms_conf_lists_every_module() {
        let m = &Manifest::builtin()[0];
        let c = dkms_conf(m);
        assert!(c.contains("PACKAGE_VERSION=\"580.95.05\""));
        assert!(c.contains("BUILT_MODULE_NAME[4]=\"nvidia-peermem\""));
        assert!(c.contains("BUILT_MODULE_LOCATION[0]=\"kernel-open/\""));
        assert!(
            c.contains("MAKE[0]=\"'make' -j$(nproc) modules KERNEL_UNAME=${kernelver}\"\n"),
            "{c}"
        );
        assert!(!c.contains("SYSSRC"), "{c}");
        assert!(blacklist().contains("blacklist nouveau"));
    }
}
