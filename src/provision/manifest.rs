//! Driver manifests (`patches/nvidia-<version>.toml`): what setup fetches, how each artifact is
//! pinned (sha256 of the bytes, or the git tree id of the unpacked source), the patch series by
//! upstream commit and subject, and which modules the build produces. The manifests in this
//! repository are compiled into the binary; `--manifest FILE` loads one from disk instead (a
//! mirror, or an air-gapped copy whose artifact locations are paths beside it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::kapi::{ApiChange, Check, Verdict};

/// The manifests shipped with pigpu: (file name, contents).
pub const BUILTIN: &[(&str, &str)] = &[(
    "nvidia-580.95.05.toml",
    include_str!("../../patches/nvidia-580.95.05.toml"),
)];

/// pigpu's own compatibility patches (`patches/compat/`), compiled in: (path relative to
/// `patches/`, contents). A manifest names them by that path and pins them by sha256.
const BUILTIN_COMPAT: &[(&str, &str)] = &[(
    "compat/pci-resize-resource-exclude-bars.patch",
    include_str!("../../patches/compat/pci-resize-resource-exclude-bars.patch"),
)];

/// Why a driver manifest could not be read.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("manifest {origin}: cannot read: {source}")]
    Read {
        /// Where the manifest comes from (`builtin:…` or a path).
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or not the fields a manifest has.
    #[error("manifest {origin}: not valid TOML for a driver manifest: {message}")]
    Parse {
        /// Where the manifest comes from.
        origin: String,
        /// The TOML parser's complaint.
        message: String,
    },
    /// A field has a value pigpu cannot use (a bad URL, checksum or version).
    #[error("manifest {origin}: {field} = {value:?}: expected {expected}")]
    Invalid {
        /// Where the manifest comes from.
        origin: String,
        /// The field, as a TOML path (`source.url`).
        field: String,
        /// Its value.
        value: String,
        /// What was expected, in words.
        expected: &'static str,
    },
}

/// One driver version's recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version of this file; 1.
    pub schema: u32,
    /// Kernel modules, userspace and GSP firmware must all be exactly this version.
    pub driver: String,
    /// The CPU architecture the modules and userspace are built for (`aarch64`).
    pub arch: String,
    /// One line on what this manifest installs, shown when choosing between manifests.
    pub summary: String,
    /// Offered first when several manifests are available (and taken by `--yes`).
    #[serde(default)]
    pub default: bool,
    /// Directory of the source tree holding the `.ko` files after `make modules`.
    pub modules_dir: String,
    /// Modules the build produces (names as modinfo shows them, with `-`).
    pub modules: Vec<String>,
    /// Modules loaded after install when the running kernel is the target, in order.
    pub load: Vec<String>,
    /// Free space needed under the root for the source, build and install, in MiB.
    pub disk_mib: u64,
    /// Extra `make` arguments after `modules -j N SYSSRC=…` (plain words, never a shell line).
    #[serde(default)]
    pub make_args: Vec<String>,
    /// Directory of the source tree where `make modules` runs (NVIDIA's repository: the top,
    /// whose Makefile builds the core and then `kernel-open/`; a bare `kernel-open` tree such as
    /// Debian's `nvidia-open-kernel-source`: that directory). Empty: the top.
    #[serde(default)]
    pub make_dir: String,
    /// The module source archive.
    pub source: Source,
    /// The patches applied on the source.
    pub series: Series,
    /// pigpu's own compatibility patches, each applied after the series only when the probe
    /// finds its kernel API change in the target kernel's headers.
    #[serde(default)]
    pub compat: Vec<Compat>,
    /// NVIDIA's userspace installer.
    pub userspace: Userspace,
    /// Where the manifest came from (`builtin:nvidia-580.95.05.toml` or a path).
    #[serde(skip)]
    pub origin: String,
    /// Directory for relative artifact locations (the manifest file's directory).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The module source archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short name used for cache files (`open-gpu-kernel-modules`).
    pub name: String,
    /// `https://…` (`http://` only on loopback) or a path relative to the manifest.
    pub url: String,
    /// The upstream commit the archive is a snapshot of (recorded, shown).
    pub commit: Option<String>,
    /// Git tree id of the unpacked archive's top directory.
    pub tree: Option<String>,
    /// sha256 of the archive bytes, when known.
    pub sha256: Option<String>,
}

/// The patch series applied on top of the source, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// Where the series comes from (e.g. an upstream pull request).
    #[serde(default)]
    pub upstream: String,
    /// Git tree id of the source after the whole series is applied: pins every patch at once.
    pub result_tree: Option<String>,
    /// The patches, in the order they are applied.
    #[serde(default)]
    pub patch: Vec<Patch>,
}

/// One patch of the series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Upstream commit id (for patches of others).
    pub commit: Option<String>,
    /// The patch's subject line.
    pub subject: String,
    /// Where to fetch it: a URL, or a path relative to the manifest (patches of our own).
    pub url: String,
    /// sha256 of the patch bytes; `None` leaves it to `result_tree` (or `--accept-unpinned`).
    pub sha256: Option<String>,
}

/// A compatibility patch of pigpu's own for one kernel API change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compat {
    /// The change that makes it needed (the probe's name for it).
    pub change: ApiChange,
    /// The patch's subject line.
    pub subject: String,
    /// Path relative to the manifest, or to `patches/` for the ones compiled into pigpu.
    pub file: String,
    /// sha256 of the patch bytes (required: these are pigpu's own files).
    pub sha256: String,
}

/// NVIDIA's userspace installer (`NVIDIA-Linux-<arch>-<version>.run`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Userspace {
    /// Where to fetch the installer: `https://…` or a path relative to the manifest.
    pub url: String,
    /// sha256 of the installer, when known.
    pub sha256: Option<String>,
    /// Arguments after the installer (always including `--no-kernel-modules`).
    pub args: Vec<String>,
    /// Files the installer puts in place (absolute paths in the target system): present = done.
    pub installs: Vec<String>,
    /// The uninstaller it leaves behind, as argv in the target system (for `--undo`).
    pub uninstall: Vec<String>,
}

/// Something setup downloads (or copies from an air-gapped location) into its cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// What it is, for messages ("source", "patch 2/5 (Rework DMA cache maintenance helper)").
    pub what: String,
    /// Where from: a URL or an absolute local path.
    pub location: String,
    /// File name in the cache.
    pub file: String,
    /// Expected sha256 of the bytes, when pinned that way.
    pub sha256: Option<String>,
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: Option<PathBuf>,
    ) -> Result<Manifest, ManifestError> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        m.origin = origin.to_string();
        m.base_dir = base_dir;
        m.validate()?;
        Ok(m)
    }

    /// Reads `--manifest FILE`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let origin = path.display().to_string();
        // A manifest is a few KiB: a regular file of at most 1 MiB (never a device or a FIFO).
        let read = crate::sys::root::read_regular(path, 1 << 20).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        });
        let text = read.map_err(|source| ManifestError::Read {
            origin: origin.clone(),
            source,
        })?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        Manifest::parse(&text, &origin, base)
    }

    /// The manifests compiled into pigpu, default first.
    pub fn builtin() -> Vec<Manifest> {
        let mut all: Vec<Manifest> = BUILTIN
            .iter()
            .map(|(name, text)| {
                Manifest::parse(text, &format!("builtin:{name}"), None)
                    .expect("builtin manifests are tested")
            })
            .collect();
        all.sort_by_key(|m| !m.default);
        all
    }

    fn invalid(&self, field: &str, value: &str, expected: &'static str) -> ManifestError {
        ManifestError::Invalid {
            origin: self.origin.clone(),
            field: field.to_string(),
            value: value.to_string(),
            expected,
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.schema != 1 {
            return Err(self.invalid("schema", &self.schema.to_string(), "1"));
        }
        let version_ok = !self.driver.is_empty()
            && self
                .driver
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(self.invalid("driver", &self.driver, "a version like 580.95.05"));
        }
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !word(&self.arch) {
            return Err(self.invalid("arch", &self.arch, "an architecture name like aarch64"));
        }
        if !word(&self.source.name) {
            return Err(self.invalid("source.name", &self.source.name, "letters, digits, - _ ."));
        }
        if self.modules.is_empty() || !self.modules.iter().all(|m| word(m)) {
            return Err(self.invalid(
                "modules",
                &self.modules.join(","),
                "a non-empty list of module names",
            ));
        }
        if let Some(m) = self.load.iter().find(|m| !self.modules.contains(m)) {
            return Err(self.invalid("load", m, "one of the names in `modules`"));
        }
        for (field, dir) in [
            ("modules_dir", &self.modules_dir),
            ("make_dir", &self.make_dir),
        ] {
            if dir.contains("..") || dir.starts_with('/') {
                return Err(self.invalid(field, dir, "a relative path inside the source"));
            }
        }
        for (i, c) in self.compat.iter().enumerate() {
            if !is_hex(&c.sha256, 64) {
                return Err(self.invalid(
                    &format!("compat[{i}].sha256"),
                    &c.sha256,
                    "64 lowercase hex digits (sha256)",
                ));
            }
            if c.file.contains("..") || c.file.starts_with('/') || c.file.contains("://") {
                return Err(self.invalid(
                    &format!("compat[{i}].file"),
                    &c.file,
                    "a relative path beside the manifest (or under patches/ for built-in ones)",
                ));
            }
        }
        if !self
            .userspace
            .args
            .iter()
            .any(|a| a == "--no-kernel-modules")
        {
            return Err(self.invalid(
                "userspace.args",
                &self.userspace.args.join(" "),
                "to contain --no-kernel-modules (pigpu builds the modules itself)",
            ));
        }
        for f in &self.userspace.installs {
            if !f.starts_with('/') {
                return Err(self.invalid(
                    "userspace.installs",
                    f,
                    "absolute paths in the target system",
                ));
            }
        }
        let sha = |field: &str, v: &Option<String>| -> Result<(), ManifestError> {
            match v {
                Some(s) if !is_hex(s, 64) => {
                    Err(self.invalid(field, s, "64 lowercase hex digits (sha256)"))
                }
                _ => Ok(()),
            }
        };
        let git = |field: &str, v: &Option<String>| -> Result<(), ManifestError> {
            match v {
                Some(s) if !is_hex(s, 40) => {
                    Err(self.invalid(field, s, "40 lowercase hex digits (a git id)"))
                }
                _ => Ok(()),
            }
        };
        sha("source.sha256", &self.source.sha256)?;
        git("source.tree", &self.source.tree)?;
        git("source.commit", &self.source.commit)?;
        git("series.result_tree", &self.series.result_tree)?;
        sha("userspace.sha256", &self.userspace.sha256)?;
        self.check_location("source.url", &self.source.url)?;
        self.check_location("userspace.url", &self.userspace.url)?;
        for (i, p) in self.series.patch.iter().enumerate() {
            sha(&format!("series.patch[{i}].sha256"), &p.sha256)?;
            git(&format!("series.patch[{i}].commit"), &p.commit)?;
            self.check_location(&format!("series.patch[{i}].url"), &p.url)?;
        }
        Ok(())
    }

    fn check_location(&self, field: &str, loc: &str) -> Result<(), ManifestError> {
        if let Some((scheme, _)) = loc.split_once("://") {
            if scheme != "https" && scheme != "http" {
                return Err(self.invalid(
                    field,
                    loc,
                    "an https:// URL or a path beside the manifest",
                ));
            }
            // Plain http is refused at download time unless the host is loopback.
        } else if self.base_dir.is_none() && !loc.starts_with('/') {
            return Err(self.invalid(
                field,
                loc,
                "a URL (built-in manifests cannot name local files)",
            ));
        }
        Ok(())
    }

    /// Resolves a location: URLs stay, paths become absolute (relative to the manifest).
    fn resolve(&self, loc: &str) -> String {
        if loc.contains("://") || loc.starts_with('/') {
            return loc.to_string();
        }
        match &self.base_dir {
            Some(b) => b.join(loc).display().to_string(),
            None => loc.to_string(),
        }
    }

    /// The source archive.
    pub fn source_artifact(&self) -> Artifact {
        let id = self
            .source
            .commit
            .as_deref()
            .or(self.source.tree.as_deref())
            .or(self.source.sha256.as_deref())
            .unwrap_or("unpinned");
        Artifact {
            what: format!("module source {}", self.source.name),
            location: self.resolve(&self.source.url),
            file: format!("{}-{}.tar.gz", self.source.name, &id[..id.len().min(12)]),
            sha256: self.source.sha256.clone(),
        }
    }

    /// The patches, in order.
    pub fn patch_artifacts(&self) -> Vec<Artifact> {
        let n = self.series.patch.len();
        self.series
            .patch
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let tag = p
                    .commit
                    .as_deref()
                    .map(|c| c[..12].to_string())
                    .or_else(|| p.sha256.as_deref().map(|s| s[..12].to_string()))
                    .unwrap_or_else(|| format!("{}", i + 1));
                Artifact {
                    what: format!("patch {}/{} ({})", i + 1, n, p.subject),
                    location: self.resolve(&p.url),
                    file: format!("{:04}-{tag}.patch", i + 1),
                    sha256: p.sha256.clone(),
                }
            })
            .collect()
    }

    /// The userspace installer.
    pub fn userspace_artifact(&self) -> Artifact {
        let loc = self.resolve(&self.userspace.url);
        let name = loc
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("userspace.run")
            .to_string();
        Artifact {
            what: format!("userspace installer {}", self.driver),
            location: loc,
            file: name,
            sha256: self.userspace.sha256.clone(),
        }
    }

    /// The bytes of a compatibility patch, checked against its pin: the file beside the manifest
    /// when there is one, else the copy compiled into pigpu.
    pub fn compat_bytes(&self, c: &Compat) -> Result<Vec<u8>, String> {
        let beside = self.base_dir.as_ref().map(|b| b.join(&c.file));
        let bytes = match beside.as_ref().filter(|p| p.is_file()) {
            Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => BUILTIN_COMPAT
                .iter()
                .find(|(name, _)| *name == c.file)
                .map(|(_, text)| text.as_bytes().to_vec())
                .ok_or_else(|| {
                    format!(
                        "compatibility patch {} is neither beside manifest {} nor built into pigpu",
                        c.file, self.origin
                    )
                })?,
        };
        let got: String = {
            use sha2::{Digest, Sha256};
            Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        if got != c.sha256 {
            return Err(format!(
                "compatibility patch {}: sha256 {got}, manifest {} pins {}",
                c.file, self.origin, c.sha256
            ));
        }
        Ok(bytes)
    }

    /// Everything fetched, in order.
    pub fn artifacts(&self) -> Vec<Artifact> {
        let mut all = vec![self.source_artifact()];
        all.extend(self.patch_artifacts());
        all.push(self.userspace_artifact());
        all
    }

    /// Artifacts nothing pins, as messages (empty when everything is pinned). Patches without
    /// their own sha256 are pinned by `series.result_tree`.
    pub fn unpinned(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.source.tree.is_none() && self.source.sha256.is_none() {
            out.push(format!(
                "{} (no tree id or sha256)",
                self.source_artifact().what
            ));
        }
        if self.series.result_tree.is_none() {
            for (a, p) in self.patch_artifacts().iter().zip(&self.series.patch) {
                if p.sha256.is_none() {
                    out.push(format!("{} (no sha256 and no series.result_tree)", a.what));
                }
            }
        }
        if self.userspace.sha256.is_none() {
            out.push(format!("{} (no sha256)", self.userspace_artifact().what));
        }
        out
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What the build needs for a kernel, decided from the probe and the manifest's compat patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'m> {
    /// Compatibility patches to apply after the series.
    pub apply: Vec<&'m Compat>,
    /// One line per probed change: what the headers said and what follows.
    pub reasons: Vec<String>,
}

/// Decides which compatibility patches the build for a kernel with these `checks` needs, or
/// refuses (with the reason and the way out) when the kernel has a change the driver cannot
/// build against and no patch of pigpu's covers it.
pub fn decide_compat<'m>(
    driver: &str,
    compat: &'m [Compat],
    release: &str,
    checks: &[Check],
) -> Result<Decision<'m>, String> {
    let mut d = Decision {
        apply: Vec::new(),
        reasons: Vec::new(),
    };
    for c in checks {
        let patch = compat.iter().find(|p| p.change == c.change);
        match (&c.verdict, patch) {
            (Verdict::Present { evidence }, Some(p)) => {
                d.apply.push(p);
                d.reasons.push(format!(
                    "kernel {release}: {} ({evidence}): applying pigpu's compatibility patch \"{}\" ({})",
                    c.change.describe(),
                    p.subject,
                    p.file
                ));
            }
            (Verdict::Present { evidence }, None) => {
                return Err(format!(
                    "kernel {release} cannot build NVIDIA {driver}: {} ({evidence}), and this \
                     driver's manifest has no compatibility patch for it. Build for an older \
                     kernel (hold it: apt-mark hold linux-image-rpi-v8 linux-headers-rpi-v8; pick \
                     it with --kernel-release), or use a manifest for a driver that supports this \
                     kernel",
                    c.change.describe()
                ));
            }
            (Verdict::Absent { evidence }, _) => d.reasons.push(format!(
                "kernel {release}: {} ({evidence}): no compatibility patch needed",
                c.change.describe_absent()
            )),
            (Verdict::Unknown { why }, _) => d.reasons.push(format!(
                "kernel {release}: could not check whether {}: {why}; building as is",
                c.change.describe()
            )),
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_carries_the_pins_from_the_design_notes() {
        let all = Manifest::builtin();
        let m = all.iter().find(|m| m.driver == "580.95.05").unwrap();
        assert!(m.default);
        assert_eq!(m.arch, "aarch64");
        assert_eq!(
            m.source.commit.as_deref(),
            Some("2b436058a616676ec888ef3814d1db6b2220f2eb")
        );
        assert_eq!(
            m.source.tree.as_deref(),
            Some("a5788e21728d270192b2ff80e97c7ea84d604859")
        );
        assert_eq!(
            m.series.result_tree.as_deref(),
            Some("a5bde54424f3e6c3f3270781eba532cd4ed71942")
        );
        let commits: Vec<&str> = m
            .series
            .patch
            .iter()
            .map(|p| p.commit.as_deref().unwrap())
            .collect();
        assert_eq!(
            commits,
            [
                "ac7630de5121c94080a633c273d1e38f516afc8c",
                "95bc81d278b66e6b7bbed6b7d8eca8feb9cdce4b",
                "9861907db5ee333e74fa31153d7269ca7028f2c0",
                "492cb5275fb49e8c7b9c044f0e313808a68c7655",
                "10072734b2f88f3580cdb036778ec27d2b4f2fb9",
            ]
        );
        assert_eq!(
            m.series.patch[1].subject,
            "Disable WC iomaps by default for unknown Arm chipsets"
        );
        assert_eq!(
            m.userspace.sha256.as_deref(),
            Some("ccb4426e98a29367c60daf9df34c2a577655d54d5be25463ccd409b0b2e52029")
        );
        assert!(m.unpinned().is_empty(), "{:?}", m.unpinned());
        // pigpu's own compatibility patch is compiled in and matches its pin.
        assert_eq!(m.compat.len(), 1);
        let patch = m.compat_bytes(&m.compat[0]).unwrap();
        assert!(String::from_utf8_lossy(&patch).contains("+++ b/kernel-open/nvidia/nv-pci.c"));
        let mut bad = m.compat[0].clone();
        bad.sha256 = "00".repeat(32);
        assert!(m
            .compat_bytes(&bad)
            .unwrap_err()
            .contains("sha256 2a06e271"));
        assert!(m
            .artifacts()
            .iter()
            .all(|a| a.location.starts_with("https://")));
        assert!(m
            .userspace
            .args
            .contains(&"--no-kernel-modules".to_string()));
    }

    #[test]
    fn bad_fields_are_named() {
        let good = BUILTIN[0].1;
        let bad = good.replace(
            "ccb4426e98a29367c60daf9df34c2a577655d54d5be25463ccd409b0b2e52029",
            "ccb4",
        );
        let e = Manifest::parse(&bad, "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("userspace.sha256") && e.contains("64"), "{e}");
        let e = Manifest::parse("schema = 1\n", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("manifest t.toml: not valid TOML"), "{e}");
        let bad = good.replace("ftp", "x").replace(
            "https://us.download.nvidia.com",
            "ftp://us.download.nvidia.com",
        );
        let e = Manifest::parse(&bad, "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("userspace.url"), "{e}");
    }

    #[test]
    fn unpinned_artifacts_are_listed() {
        let text = BUILTIN[0]
            .1
            .replace(
                "result_tree = \"a5bde54424f3e6c3f3270781eba532cd4ed71942\"\n",
                "",
            )
            .replace(
                "sha256 = \"ccb4426e98a29367c60daf9df34c2a577655d54d5be25463ccd409b0b2e52029\"\n",
                "",
            );
        let m = Manifest::parse(&text, "t.toml", None).unwrap();
        let u = m.unpinned();
        assert_eq!(u.len(), 6, "{u:?}");
        assert!(u[0].contains("patch 1/5"), "{u:?}");
        assert!(u[5].contains("userspace"), "{u:?}");
    }
}
