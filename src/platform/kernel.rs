//! Kernels: the one page-size rule (the kernel's build config, else the Raspberry Pi flavour in
//! its release name) and the architecture from the build config. The NVIDIA driver needs 4K
//! pages; a Pi 5 boots the 16K `-rpi-2712` kernel by default.

/// Page size in bytes and what said so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PageSize {
    /// Page size in bytes (4096 or 16384 on a Pi).
    pub bytes: u32,
    /// What said so, in words (the build-config line, or the release name and its flavour).
    pub source: String,
}

/// Page size and architecture from a kernel config text (`/boot/config-<rel>` or `.config`).
pub fn config_facts(config: &str) -> (Option<u32>, Option<String>) {
    let has = |k: &str| config.lines().any(|l| l.trim() == format!("{k}=y"));
    let page = if has("CONFIG_ARM64_4K_PAGES") {
        Some(4096)
    } else if has("CONFIG_ARM64_16K_PAGES") {
        Some(16384)
    } else if has("CONFIG_ARM64_64K_PAGES") {
        Some(65536)
    } else if has("CONFIG_X86_64") || has("CONFIG_X86") {
        Some(4096)
    } else {
        None
    };
    let arch = if has("CONFIG_ARM64") {
        Some("aarch64".to_string())
    } else if has("CONFIG_X86_64") {
        Some("x86_64".to_string())
    } else {
        None
    };
    (page, arch)
}

/// Page size from a Raspberry Pi kernel release name (`…-rpi-2712` 16K, `…-rpi-v8` 4K).
pub fn page_size_from_release(release: &str) -> Option<u32> {
    if release.ends_with("-rpi-2712") || release.ends_with("_16k") || release.ends_with("-16k") {
        Some(16384)
    } else if release.ends_with("-rpi-v8") {
        Some(4096)
    } else {
        None
    }
}

/// The page-size rule: the build config (`config_path` names it for the evidence) wins, then
/// the release's flavour.
pub fn page_size(config: Option<(&str, &str)>, release: &str) -> Option<PageSize> {
    if let Some((path, text)) = config {
        if let (Some(bytes), _) = config_facts(text) {
            return Some(PageSize {
                bytes,
                source: format!("{path}: {}K pages", bytes / 1024),
            });
        }
    }
    page_size_from_release(release).map(|bytes| PageSize {
        bytes,
        source: format!(
            "kernel release {release} (the {}K-page flavour)",
            bytes / 1024
        ),
    })
}

/// The headers package for a kernel release (Pi flavours have meta-packages).
pub fn headers_package(release: &str) -> String {
    if release.ends_with("-rpi-v8") {
        "linux-headers-rpi-v8".into()
    } else if release.ends_with("-rpi-2712") {
        "linux-headers-rpi-2712".into()
    } else {
        format!("linux-headers-{release}")
    }
}

/// "6.18.3+rpt-rpi-v8" → (6, 18).
pub fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_size_rule() {
        assert_eq!(
            config_facts("CONFIG_ARM64=y\nCONFIG_ARM64_16K_PAGES=y\n"),
            (Some(16384), Some("aarch64".to_string()))
        );
        assert_eq!(
            config_facts("CONFIG_X86_64=y\nCONFIG_X86=y\n").0,
            Some(4096)
        );
        assert_eq!(page_size_from_release("6.12.47+rpt-rpi-2712"), Some(16384));
        assert_eq!(page_size_from_release("6.12.47+rpt-rpi-v8"), Some(4096));
        // The config wins over the name.
        let p = page_size(
            Some(("/boot/config-x", "CONFIG_ARM64_4K_PAGES=y\n")),
            "6.12.47+rpt-rpi-2712",
        )
        .unwrap();
        assert_eq!(p.bytes, 4096);
        assert!(p.source.contains("/boot/config-x"));
        assert_eq!(
            page_size(Some(("c", "junk")), "6.12-rpi-2712")
                .unwrap()
                .bytes,
            16384
        );
        assert_eq!(page_size(None, "6.1.0-40-amd64"), None);
        assert_eq!(major_minor("6.12.47+rpt-rpi-v8"), Some((6, 12)));
        assert_eq!(major_minor("garbage"), None);
        assert_eq!(
            headers_package("6.12.47+rpt-rpi-2712"),
            "linux-headers-rpi-2712"
        );
        assert_eq!(
            headers_package("6.1.0-56-amd64"),
            "linux-headers-6.1.0-56-amd64"
        );
    }
}
