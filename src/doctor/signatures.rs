//! The known kernel-log and tool-output lines of a Pi + NVIDIA system (the table in
//! docs/doctor.md, from the public reports in tests/fixtures/doctor/real-logs/; checked against
//! the held-out ones in tests/fixtures/doctor/held-out/), each mapped to a
//! finding id, a severity and the fix. Matching is per logical line (see `text`), with a
//! fallback over two adjacent lines for messages a terminal or an issue tracker wrapped.

use std::sync::OnceLock;

use regex::{Regex, RegexSet};

use super::text::Line;
use super::Status;

/// One known line.
pub struct Signature {
    /// Id of the finding a match produces.
    pub finding: &'static str,
    /// Status of that finding.
    pub status: Status,
    /// Regular expression matched against each log line.
    pub pattern: &'static str,
    /// What the line means, in one sentence.
    pub summary: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

const FIX_PAGE: &str = "boot the 4K-page kernel: echo 'kernel=kernel8.img' | sudo tee -a /boot/firmware/config.txt && sudo apt install linux-headers-rpi-v8 && sudo reboot; then rebuild the modules for it: sudo pigpu setup";
const FIX_PATCH: &str = "build and install the open modules 580.95.05 with the Pi patches (NVIDIA/open-gpu-kernel-modules PR #972): sudo pigpu setup";
const FIX_NOUVEAU: &str = "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && sudo update-initramfs -u && sudo reboot";
const FIX_LINK: &str = "enable the port and let it train: 'dtparam=pciex1' in /boot/firmware/config.txt (Pi 5; on by default on a CM5 IO board), try 'dtparam=pciex1_gen=2', check the ribbon cable / riser and its power, and power the GPU on before the Pi";
const FIX_BAR: &str = "the Pi's PCIe window cannot hold a resized or 64 GB BAR: keep NVreg_EnableResizableBar=0, turn Resizable BAR off for the card, put pro cards (RTX A/Quadro) in graphics display mode, and put fewer GPUs behind one switch";
const FIX_DEAD: &str = "the card stopped answering on the bus: power everything off, check the GPU's PCIe power cables and the riser/cable, switch the GPU's power supply on before the Pi";
const FIX_USERSPACE: &str = "complete the NVIDIA userspace install of the same version as the module: sudo pigpu setup (minimal images also need: sudo apt install libxext6 libx11-6)";
const FIX_VRAM: &str = "the model and its context do not fit in VRAM: use a smaller quantisation (Q4_K_M), a shorter context, or offload fewer layers";

/// The table. Order matters only for ties: the first signature of the worst status supplies the
/// summary and fix of a finding.
pub const SIGNATURES: &[Signature] = &[
    // --- page size
    Signature {
        finding: "kernel-page-size",
        status: Status::Fail,
        pattern: r"memmgrDeterminePageSize failed",
        summary: "the NVIDIA driver cannot work with this kernel's page size (16K pages; it needs 4K)",
        fix: FIX_PAGE,
    },
    Signature {
        finding: "kernel-page-size",
        status: Status::Fail,
        pattern: r"(?i)running with a 16\s?kb? page size",
        summary: "the kernel runs with 16K pages; the NVIDIA driver needs 4K",
        fix: FIX_PAGE,
    },
    // --- open modules without the Pi patches
    Signature {
        finding: "driver-unpatched",
        status: Status::Fail,
        // Not `Cannot initialize GSP firmware RM` alone: it follows every GSP boot failure (a GPU
        // left in a bad state, firmware that never booted), on any machine.
        pattern: r"no initialized WPR2 found|RmInitAdapter failed! ?\(0x62:0xffff:",
        summary: "the open NVIDIA modules are not patched for the Pi's PCIe (GSP firmware never started)",
        fix: FIX_PATCH,
    },
    Signature {
        finding: "driver-unpatched",
        status: Status::Warn,
        pattern: r"PCIE config space is inaccessible",
        summary: "the NVIDIA driver cannot reach the GPU's PCIe config space as it expects (unpatched modules print this)",
        fix: FIX_PATCH,
    },
    // --- proprietary modules
    Signature {
        finding: "driver-proprietary",
        status: Status::Fail,
        pattern: r"RmInitAdapter failed! ?\(0x(?:24|31):",
        summary: "the proprietary (closed) NVIDIA kernel module failed to initialise the GPU; it cannot work on a Pi",
        fix: "remove the closed driver and install the patched open modules: sudo pigpu setup",
    },
    Signature {
        finding: "driver-proprietary",
        status: Status::Warn,
        pattern: r"loading NVIDIA UNIX (?:x86_64|aarch64|arm64|ARM64|ppc64le) Kernel Module",
        summary: "the proprietary (closed) NVIDIA kernel module is loaded; on a Pi only the patched open modules work",
        fix: "install the patched open modules instead: sudo pigpu setup",
    },
    // --- GPU without a GSP
    Signature {
        finding: "gpu-no-gsp",
        status: Status::Fail,
        pattern: r"does not include the required GPU\s*System Processor|not supported by open\s*nvidia\.ko",
        summary: "this GPU has no GSP (older than Turing): the open kernel modules cannot drive it",
        fix: "use a Turing (RTX 20xx, T-series) or newer NVIDIA GPU; Pascal and older cannot work on a Pi",
    },
    // --- GPU firmware never booted
    Signature {
        finding: "gpu-firmware-boot",
        status: Status::Fail,
        pattern: r"gpuWaitForGfwBootComplete|kgspWaitForGfwBootOk|RmInitAdapter failed! ?\(0x62:0x55:",
        summary: "the GPU's own firmware did not finish booting",
        fix: "switch everything off, power the GPU's supply on before the Pi, and retry; if it persists this card does not work on the Pi (seen with a Quadro RTX 8000)",
    },
    // --- GSP still up from an earlier driver load
    Signature {
        finding: "gpu-needs-reset",
        status: Status::Fail,
        pattern: r"unexpected WPR2 already up",
        summary: "the GPU's GSP firmware is still running from an earlier driver load (WPR2 already up): the driver cannot boot it again until the GPU is reset",
        fix: "power the machine (and the GPU's supply) fully off for a few seconds, not just a reboot; if it comes back after reloading the driver, report it with the driver version",
    },
    // --- GPU newer than the driver
    Signature {
        finding: "driver-too-old",
        status: Status::Fail,
        pattern: r"not supported by the\s*NVIDIA \d+\.\d+(?:\.\d+)? driver release",
        summary: "this driver release does not know the GPU (the GPU is newer than the driver)",
        fix: "install a newer NVIDIA driver release, one whose README (Appendix A) lists this GPU's PCI ID",
    },
    // --- GSP firmware file
    Signature {
        finding: "gsp-firmware-missing",
        status: Status::Fail,
        pattern: r"Direct firmware load for nvidia/\S+ failed with error",
        summary: "the GSP firmware file for the loaded module's version is missing",
        fix: "install the NVIDIA userspace of exactly the module's version (it ships /lib/firmware/nvidia/<version>/gsp_*.bin): sudo pigpu setup",
    },
    // --- version mismatch
    Signature {
        finding: "driver-version-mismatch",
        status: Status::Fail,
        pattern: r"API mismatch: the client\b|Driver/library version mismatch",
        summary: "the NVIDIA kernel module and userspace libraries are different versions",
        fix: "rebuild the modules for the installed userspace (or install the userspace of the module's version): sudo pigpu setup, then reboot",
    },
    // --- GSP firmware stops answering (Xid 119)
    Signature {
        finding: "gsp-rpc-timeout",
        status: Status::Fail,
        pattern: r"Timeout after \d+s of waiting for RPC response from GPU\d* GSP|Xid \(PCI:[0-9a-fA-F:.]+\): 119\b",
        summary: "the GPU's GSP firmware stopped answering the driver (Xid 119, RPC timeout)",
        fix: "power-cycle the GPU (everything off, GPU supply on before the Pi); if it recurs, check the PCIe link (dtparam=pciex1_gen=2) and the GPU's power, and report the driver version",
    },
    // --- building the modules
    Signature {
        finding: "build-split-headers",
        status: Status::Fail,
        pattern: r"fatal error: stdarg\.h: No such file or directory|#error \w+\(\) conftest failed!",
        summary: "NVIDIA's conftests could not compile against the kernel headers: the build was given only the arch half of split headers (SYSSRC=/lib/modules/<release>/build), not the -common half with the sources",
        fix: "build with KERNEL_UNAME alone, or SYSSRC=/lib/modules/$(uname -r)/source SYSOUT=/lib/modules/$(uname -r)/build: sudo pigpu setup does this",
    },
    Signature {
        finding: "build-kernel-api-too-new",
        status: Status::Fail,
        pattern: r"too few arguments to function .pci_resize_resource.",
        summary: "the driver calls pci_resize_resource() with 3 arguments, but this kernel's takes 4 (Linux 6.19, or a stable kernel with the change backported): 580.95.05 cannot build for it unpatched",
        fix: "sudo pigpu setup (it probes the headers and applies its compatibility patch); or boot a kernel without the change and hold it: sudo apt-mark hold linux-image-rpi-v8 linux-headers-rpi-v8",
    },
    // --- unresolved symbols
    Signature {
        finding: "nvidia-drm-symbols",
        status: Status::Warn,
        pattern: r"nvidia[_-]drm: Unknown symbol \w+",
        summary: "nvidia-drm could not load (unresolved kernel symbols); compute and Vulkan do not need it",
        fix: "sudo depmod -a && sudo modprobe nvidia-drm; check the headers match the running kernel: ls -l /lib/modules/$(uname -r)/build",
    },
    Signature {
        finding: "module-symbols",
        status: Status::Fail,
        pattern: r"\bnvidia(?:[_-]uvm|[_-]modeset)?: (?:Unknown symbol \w+|disagrees about version of symbol)",
        summary: "an NVIDIA kernel module does not fit the running kernel (unresolved or mismatched symbols)",
        fix: "rebuild the modules against the running kernel's headers: sudo apt install linux-headers-$(uname -r) && sudo pigpu setup",
    },
    // --- nouveau
    Signature {
        finding: "nouveau-bound",
        status: Status::Fail,
        pattern: r"\bnouveau\s+[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]:|Kernel driver in use: nouveau",
        summary: "nouveau (the reverse-engineered driver) is driving the NVIDIA GPU; it does not work on the Pi and blocks the NVIDIA driver",
        fix: FIX_NOUVEAU,
    },
    // --- PCIe
    Signature {
        finding: "pcie-device-dead",
        status: Status::Fail,
        pattern: r"unknown chipset \(ffffffff\)|fallen off the bus|Unknown header type 7f|\(rev ff\)",
        summary: "the GPU reads back all ones: it dropped off the PCIe bus (power or link)",
        fix: FIX_DEAD,
    },
    Signature {
        finding: "pcie-link-down",
        status: Status::Fail,
        pattern: r"brcm-pcie (?:1000110000|fd500000)\.pcie: (?:link down|phy link never came up)",
        summary: "the Pi's external PCIe link did not come up: nothing was found behind the port",
        fix: FIX_LINK,
    },
    Signature {
        finding: "pcie-bar-space",
        status: Status::Fail,
        pattern: r"cannot fit 0x[0-9a-f]+|can't assign; no space|BAR \d+:? (?:\[[^\]]*\]:? )?(?:no space for|failed to assign)|resource\d+_resize.*No space left|(?i)failed to resize bar",
        summary: "a BAR of the GPU (or its bridge window) does not fit in the Pi's PCIe address window",
        fix: FIX_BAR,
    },
    Signature {
        finding: "kernel-pcie-regression",
        status: Status::Warn,
        pattern: r"probe with driver \S+ failed with error -12",
        summary: "a PCIe device failed to probe with ENOMEM: on kernels 6.18+ this is a known regression on the Pi's PCIe port",
        fix: "pin a known-good 6.12.y kernel: sudo apt install linux-image-rpi-v8=<6.12 version> && sudo apt-mark hold linux-image-rpi-v8",
    },
    Signature {
        finding: "gpu-init-failed",
        status: Status::Fail,
        pattern: r"RmInitAdapter failed!|rm_init_adapter failed|probe with driver nvidia failed|None of the NVIDIA devices were initialized|NVIDIA probe routine failed",
        summary: "the NVIDIA driver failed to initialise the GPU",
        fix: "look at the NVRM lines just before this one (sudo dmesg | grep -B5 NVRM); run pigpu doctor on that log",
    },
    Signature {
        finding: "gpu-visible",
        status: Status::Fail,
        pattern: r"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver|^No devices were found",
        summary: "nvidia-smi cannot see a GPU: the kernel driver is not loaded or did not initialise the card",
        fix: "sudo modprobe nvidia; then sudo dmesg | grep NVRM (and run pigpu doctor on that output)",
    },
    // --- Vulkan loader
    Signature {
        finding: "vulkan-icd-broken",
        status: Status::Fail,
        pattern: r"Could not get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'",
        summary: "the NVIDIA Vulkan driver library loads but cannot start: the kernel driver is not working",
        fix: "fix the kernel driver first (see the driver findings; lsmod | grep nvidia; sudo dmesg | grep NVRM)",
    },
    Signature {
        finding: "vulkan-icd-broken",
        status: Status::Fail,
        pattern: r"Failed loading library associated with ICD JSON|(?:Loader Message|loader).*\.so[.\d]*: cannot open shared object file",
        summary: "a Vulkan driver (ICD) library or one of its dependencies is missing",
        fix: FIX_USERSPACE,
    },
    Signature {
        finding: "vulkan-icd-broken",
        status: Status::Fail,
        pattern: r"Attempt to retrieve either 'vkGetInstanceProcAddr' or 'vk_icdGetInstanceProcAddr' from ICD \S+ failed",
        summary: "a Vulkan ICD manifest names a library that is not a Vulkan driver (it exports no vk_icdGetInstanceProcAddr)",
        fix: "reinstall the NVIDIA userspace so nvidia_icd.json names libGLX_nvidia.so.0 of the module's version: sudo pigpu setup",
    },
    Signature {
        finding: "vulkan-icd-broken",
        status: Status::Warn,
        pattern: r"Failed to CreateInstance in ICD",
        summary: "the Vulkan loader skipped a driver that failed to start",
        fix: "see the other Vulkan and driver findings",
    },
    Signature {
        finding: "vulkan-no-gpu",
        status: Status::Fail,
        // The instance-level INCOMPATIBLE_DRIVER (vulkaninfo's `…: failed with …`, or `Cannot
        // create Vulkan instance`), not one driver's own: Mesa prints that per unsupported GPU.
        pattern: r"ggml_vulkan: No devices found|(?i)found 0 vulkan devices|vkEnumeratePhysicalDevices.*(?:count|devices).*\b0\b|ERROR_INITIALIZATION_FAILED|failed with (?:VK_)?ERROR_INCOMPATIBLE_DRIVER|Cannot create Vulkan instance",
        summary: "Vulkan found no usable GPU",
        fix: "install the NVIDIA userspace (it provides nvidia_icd.json) and make sure the kernel driver works: sudo pigpu setup",
    },
    // --- runtime
    Signature {
        finding: "vram-exhausted",
        status: Status::Fail,
        pattern: r"ErrorOutOfDeviceMemory|ERROR_OUT_OF_DEVICE_MEMORY|Device memory allocation of size \d+ failed|CUDA error: out of memory|failed to allocate \S+ buffer of size",
        summary: "the GPU ran out of memory",
        fix: FIX_VRAM,
    },
    Signature {
        finding: "cpu-fallback",
        status: Status::Warn,
        pattern: r"offloaded 0/\d+ layers to GPU",
        summary: "no model layer was put on the GPU: everything runs on the CPU",
        fix: "offload the layers (-ngl 99) and check that the NVIDIA device is the one selected",
    },
    // --- known harmless lines
    Signature {
        finding: "platform-unsupported",
        status: Status::Warn,
        pattern: r"Chipset not recognized \(vendor ID 0x14e4, device ID 0x2711\)",
        summary: "this is a Pi 4 / CM4 (BCM2711): the NVIDIA patches and this guide target the Pi 5 / CM5 (BCM2712)",
        fix: "use a Raspberry Pi 5 or CM5",
    },
    Signature {
        finding: "kernel-tainted",
        status: Status::Info,
        pattern: r"module verification failed|taints kernel",
        summary: "an out-of-tree / unsigned module tainted the kernel; harmless (expected for self-built NVIDIA modules)",
        fix: "",
    },
    Signature {
        finding: "pcie-gen",
        status: Status::Info,
        pattern: r"brcm-pcie \S+: Forcing gen 3",
        summary: "PCIe Gen 3 is forced (dtparam=pciex1_gen=3): faster, but not certified; fall back to Gen 2 if the link is flaky",
        fix: "",
    },
];

/// Lines that are known and harmless and therefore never a finding: NVRM not recognising the
/// Pi 5's root port (BCM2712) and the AArch64 qualification notice, both printed by the
/// patched open module on working systems too (#480). Kept here so a test pins that they stay
/// silent; the Pi 4's 0x2711 variant is `platform-unsupported` above.
#[cfg(test)]
const BENIGN: &[&str] = &[
    r"Chipset not recognized \(vendor ID 0x14e4, device ID 0x2712\)",
    r"has not been qualified on this platform",
];

struct Compiled {
    set: RegexSet,
    each: Vec<Regex>,
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        let pats: Vec<&str> = SIGNATURES.iter().map(|s| s.pattern).collect();
        Compiled {
            set: RegexSet::new(&pats).expect("signature regexes compile"),
            each: pats
                .iter()
                .map(|p| Regex::new(p).expect("signature regex compiles"))
                .collect(),
        }
    })
}

/// A signature that matched, with the line(s) it matched.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Index into `SIGNATURES`.
    pub signature: usize,
    /// Indices of the matched lines.
    pub lines: Vec<usize>,
}

/// Every signature hit in `lines` (indices into `SIGNATURES` and `lines`).
pub fn scan(lines: &[Line]) -> Vec<Hit> {
    let c = compiled();
    let mut hits = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let here = c.set.matches(&line.text);
        for s in here.iter() {
            if c.each[s].is_match(&line.text) {
                hits.push(Hit {
                    signature: s,
                    lines: vec![i],
                });
            }
        }
        // A message wrapped over two physical lines: try the pair, joined with and without a
        // space, for signatures that matched neither line alone.
        if let Some(next) = lines.get(i + 1) {
            let next_set = c.set.matches(&next.text);
            // A repeated `NVRM:` on the second line is the kernel's, not the message's.
            let tail = next
                .text
                .strip_prefix("NVRM:")
                .map_or(next.text.as_str(), str::trim_start);
            for joined in [
                format!("{}{}", line.text, tail),
                format!("{} {}", line.text, tail),
            ] {
                for s in c.set.matches(&joined).iter() {
                    if here.matched(s) || next_set.matched(s) {
                        continue;
                    }
                    if hits
                        .iter()
                        .any(|h| h.signature == s && h.lines == [i, i + 1])
                    {
                        continue;
                    }
                    if c.each[s].is_match(&joined) {
                        hits.push(Hit {
                            signature: s,
                            lines: vec![i, i + 1],
                        });
                    }
                }
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::text::normalize;

    fn ids(log: &str) -> Vec<&'static str> {
        let mut v: Vec<_> = scan(&normalize(log))
            .iter()
            .map(|h| SIGNATURES[h.signature].finding)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn every_signature_compiles_and_ids_are_kebab_case() {
        let _ = compiled();
        for s in SIGNATURES {
            assert!(
                s.finding
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit()),
                "{}",
                s.finding
            );
            assert!(
                s.status <= Status::Info || !s.fix.is_empty(),
                "{} needs a fix",
                s.finding
            );
        }
    }

    #[test]
    fn a_wrapped_line_still_matches() {
        let log = "[    5.75] NVRM: kgspExecuteFwsec_TU102: failed to execute FWSEC for FRTS: no initialized WP\nR2 found\n";
        assert_eq!(ids(log), vec!["driver-unpatched"]);
        let log = "NVRM: GPU 0000:01:00.0: RmInitAdapter failed!\n(0x24:0xffff:1423)\n";
        // The generic init failure matches the first line alone; `logs::merge` drops it later in
        // favour of the specific finding.
        assert_eq!(ids(log), vec!["driver-proprietary", "gpu-init-failed"]);
    }

    #[test]
    fn harmless_lines_are_info_only() {
        let log = "[ 141.8] nvidia: loading out-of-tree module taints kernel.\n[ 141.9] nvidia: module verification failed: signature and/or required key missing - tainting kernel\n";
        for h in scan(&normalize(log)) {
            assert_eq!(SIGNATURES[h.signature].status, Status::Info);
        }
        assert_eq!(ids(log), vec!["kernel-tainted"]);
    }

    /// The 2026 failure lines, each quoted from ../shared/design/pi5-nvidia-2026.md (GitHub
    /// issues #480, #1045, tiny-llm-node, raspberry-pi-pcie-devices #692, NVIDIA's osapi.c and
    /// kernel_gsp.c messages; the GSP timeout is the quoted format string with values filled in,
    /// the compiler lines are from Debian's headers in toolchain-notes.md).
    #[test]
    fn failure_lines_of_2026_reports() {
        let cases: &[(&str, &str)] = &[
            ("NVRM: gpuWaitForGfwBootComplete_TU102: failed to wait for GFW_BOOT: (progress 0x1)", "gpu-firmware-boot"),
            ("NVRM: kgspWaitForGfwBootOk_TU102: failed to wait for GFW boot complete: 0x55 VBIOS version 90.02.4A.00.01", "gpu-firmware-boot"),
            ("NVRM: GPU 0001:01:00.0: RmInitAdapter failed! (0x62:0x55:2015)", "gpu-firmware-boot"),
            ("NVRM: installed in this system is not supported by open\nNVRM: nvidia.ko because it does not include the required GPU\nNVRM: System Processor (GSP).", "gpu-no-gsp"),
            ("NVRM: API mismatch: the client 'nvidia-smi' (pid 1234)\nNVRM: has the version 550.163.01, but this kernel module has", "driver-version-mismatch"),
            ("nvidia_drm: Unknown symbol drm_client_setup (err -2)", "nvidia-drm-symbols"),
            ("/var/lib/pigpu/work/kernel-open/common/inc/nv_stdarg.h:33:14: fatal error: stdarg.h: No such file or directory", "build-split-headers"),
            ("#error dma_buf_export() conftest failed!", "build-split-headers"),
            ("nvidia/nv-pci.c:223:9: error: too few arguments to function 'pci_resize_resource'", "build-kernel-api-too-new"),
            ("NVRM: Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4).", "gsp-rpc-timeout"),
            ("NVRM: Xid (PCI:0000:01:00): 119, pid=1701, name=nvidia-smi, Timeout after 6s of waiting for RPC response from GPU0 GSP!", "gsp-rpc-timeout"),
            ("No devices were found", "gpu-visible"),
        ];
        for (line, want) in cases {
            let got = ids(line);
            assert!(got.contains(want), "{line:?}: {got:?}");
            for h in scan(&normalize(line)) {
                let s = &SIGNATURES[h.signature];
                if s.finding == *want {
                    assert!(s.status >= Status::Warn, "{want}");
                    assert!(!s.fix.is_empty(), "{want} needs a fix");
                }
            }
        }
    }

    /// Found wrong on held-out logs (tests/fixtures/doctor/held-out/INDEX.md): the GSP line that
    /// follows every GSP boot failure is no longer taken for the missing Pi patches, a stale GSP
    /// and a GPU newer than the driver are named, and so are an ICD library without the Vulkan
    /// entry point and a loader that could create no instance.
    #[test]
    fn causes_first_missed_on_held_out_logs() {
        assert!(ids("NVRM: RmInitAdapter: Cannot initialize GSP firmware RM").is_empty());
        assert_eq!(
            ids(
                "NVRM: _kgspBootGspRm: unexpected WPR2 already up, cannot proceed with booting GSP"
            ),
            vec!["gpu-needs-reset"]
        );
        assert_eq!(
            ids("NVRM: installed in this system is not supported by the\nNVRM: NVIDIA 520.56.06 driver release."),
            vec!["driver-too-old"]
        );
        assert_eq!(
            ids("loader_scanned_icd_add: Attempt to retrieve either 'vkGetInstanceProcAddr' or 'vk_icdGetInstanceProcAddr' from ICD libGL.so.1 failed."),
            vec!["vulkan-icd-broken"]
        );
        assert_eq!(
            ids("ERROR at ./vulkaninfo/vulkaninfo.h:649:vkCreateInstance failed with ERROR_INCOMPATIBLE_DRIVER"),
            vec!["vulkan-no-gpu"]
        );
        // One Mesa driver refusing its GPU is not the instance failing.
        assert!(ids(
            "ERROR: [../src/intel/vulkan/anv_device.c:1228] Code 0 : VK_ERROR_INCOMPATIBLE_DRIVER"
        )
        .is_empty());
    }

    /// Benign: seen with the patched open module too (#480), so never a finding at all,
    /// whatever surrounds them (issue 19); the lines are the quoted ones.
    #[test]
    fn benign_lines_are_never_findings() {
        let lines = [
            "[    5.61] NVRM: Chipset not recognized (vendor ID 0x14e4, device ID 0x2712)",
            "[    5.62] NVRM: The NVIDIA GPU driver for AArch64 has not been qualified on this platform",
        ];
        for (line, pat) in lines.iter().zip(BENIGN) {
            assert!(
                Regex::new(pat).unwrap().is_match(line),
                "{pat} must match {line:?}"
            );
            assert!(
                scan(&normalize(line)).is_empty(),
                "{line:?} became a finding"
            );
        }
        let log = format!("{}\n{}\n[    5.63] NVRM: loading NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build\n", lines[0], lines[1]);
        assert!(ids(&log).is_empty(), "{:?}", ids(&log));
        // The Pi 4's root port is still told apart.
        assert_eq!(
            ids("NVRM: Chipset not recognized (vendor ID 0x14e4, device ID 0x2711)"),
            vec!["platform-unsupported"]
        );
    }

    #[test]
    fn open_and_proprietary_banners_differ() {
        assert!(ids(
            "NVRM: loading NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build"
        )
        .is_empty());
        assert_eq!(
            ids("NVRM: loading NVIDIA UNIX aarch64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023"),
            vec!["driver-proprietary"]
        );
        assert_eq!(
            ids("[ 1.0] nvidia_drm: Unknown symbol drm_client_setup (err -2)"),
            vec!["nvidia-drm-symbols"]
        );
        assert_eq!(
            ids("[ 1.0] nvidia: Unknown symbol foo (err -2)"),
            vec!["module-symbols"]
        );
    }
}
