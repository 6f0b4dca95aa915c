//! Vulkan as the loader would find it: `libvulkan.so.1`, the ICD manifests, the library each
//! names, and whether that library actually loads — with the dependency that stops it named and
//! mapped to the Debian package that provides it (`libGLdispatch.so.0` → `libglvnd0`).
//!
//! On the live system a library is tried with the real dynamic loader (`dlopen`, the call the
//! Vulkan loader makes); under another root (a mounted image, a test's fake root) loading would
//! pull in this machine's libraries instead, so there the ELF dependencies are walked inside the
//! root (`elf`).

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsString};

use serde::Serialize;

use super::elf;
use crate::sys::Root;

/// Where the loader looks for ICD manifests (system scope, in its search order).
const ICD_DIRS: &[&str] = &[
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/share/vulkan/icd.d",
];

/// Directories where shared libraries live on Debian / Pi OS (and a few other layouts).
pub const LIB_DIRS: &[&str] = &[
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
];

/// Libraries libGLX_nvidia.so.0 cannot load without, checked by name when the library itself
/// cannot be read (a stand-in file): "libXext.so.6: cannot open shared object file".
const NVIDIA_ICD_DEPS: &[&str] = &["libX11.so.6", "libXext.so.6"];

/// The Debian / Pi OS package that provides a soname, for the libraries Vulkan drivers need.
fn package_for(soname: &str) -> Option<&'static str> {
    Some(match soname {
        "libGLdispatch.so.0" => "libglvnd0",
        "libGLX.so.0" => "libglx0",
        "libGL.so.1" => "libgl1",
        "libEGL.so.1" => "libegl1",
        "libOpenGL.so.0" => "libopengl0",
        "libX11.so.6" => "libx11-6",
        "libXext.so.6" => "libxext6",
        "libX11-xcb.so.1" => "libx11-xcb1",
        "libxcb.so.1" => "libxcb1",
        "libxcb-dri3.so.0" => "libxcb-dri3-0",
        "libxcb-present.so.0" => "libxcb-present0",
        "libxshmfence.so.1" => "libxshmfence1",
        "libwayland-client.so.0" => "libwayland-client0",
        "libdrm.so.2" => "libdrm2",
        "libvulkan.so.1" => "libvulkan1",
        "libz.so.1" => "zlib1g",
        "libzstd.so.1" => "libzstd1",
        "libstdc++.so.6" => "libstdc++6",
        "libgcc_s.so.1" => "libgcc-s1",
        "libexpat.so.1" => "libexpat1",
        _ => return None,
    })
}

/// The C runtime: under a sparse fake root without a libc these are taken as present.
fn c_runtime(soname: &str) -> bool {
    [
        "libc.so",
        "libm.so",
        "libdl.so",
        "libpthread.so",
        "librt.so",
        "ld-linux",
    ]
    .iter()
    .any(|p| soname.starts_with(p))
}

/// Whether an ICD's library loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Load {
    /// The real loader opened it (live), or every dependency was found (another root).
    Loads,
    /// The manifest names a library that is not there.
    NoLibrary,
    /// A dependency is missing: which one, which library needs it, which package has it.
    Missing {
        /// The missing library (`libnvidia-glsi.so.580.95.05`).
        soname: String,
        /// The library that needs it.
        needed_by: String,
        /// The Debian package that ships it, when known.
        package: Option<String>,
    },
    /// The loader refused it for another reason (its message).
    Fails {
        /// The loader's message.
        error: String,
    },
    /// Could not be checked (not an ELF file pigpu reads, e.g. a test's stand-in).
    Unverified {
        /// Why it could not be checked.
        why: String,
    },
}

/// One ICD manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Icd {
    /// The manifest's system path.
    pub manifest: String,
    /// `ICD.library_path` as written.
    pub library: String,
    /// Where that library is (system path), when it exists.
    pub resolved: Option<String>,
    /// Whether the library or manifest path names `nvidia`.
    pub is_nvidia: bool,
    /// Whether the library loads.
    pub load: Load,
}

impl Icd {
    /// One line on why this driver cannot be used, `None` when it loads or cannot be checked.
    pub fn problem(&self) -> Option<String> {
        match &self.load {
            Load::Loads | Load::Unverified { .. } => None,
            Load::NoLibrary => Some(format!(
                "{} names {}, which is not installed",
                self.manifest, self.library
            )),
            Load::Missing {
                soname,
                needed_by,
                package,
            } => Some(format!(
                "{} ({}) cannot load: {needed_by} needs {soname}, which is not installed{}",
                self.library,
                self.manifest,
                package
                    .as_deref()
                    .map(|p| format!(" (package {p})"))
                    .unwrap_or_default()
            )),
            Load::Fails { error } => Some(format!(
                "{} ({}) cannot load: {error}",
                self.library, self.manifest
            )),
        }
    }
}

/// The Vulkan side of the platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Vulkan {
    /// `libvulkan.so.1` (system path), when installed.
    pub loader: Option<String>,
    /// Every ICD manifest found in the loader's search directories.
    pub icds: Vec<Icd>,
    /// Manifests that are not ICD manifests or cannot be read: `path: why`.
    pub bad_manifests: Vec<String>,
    /// Set when `VK_DRIVER_FILES` / `VK_ICD_FILENAMES` chose the manifests (live only).
    pub override_var: Option<String>,
}

/// The system path of a library by file name (`libvulkan.so.1`), if installed.
pub fn find_library(root: &Root, name: &str) -> Option<String> {
    LIB_DIRS
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| root.exists_resolved(p))
}

/// What the Vulkan loader inside pigpu takes from pigpu's own environment: the manifests that
/// `VK_DRIVER_FILES` (or the older `VK_ICD_FILENAMES`) names, which it loads instead of
/// searching [`ICD_DIRS`]. The command layer resolves it once ([`VulkanEnv::from_lookup`] over
/// the process environment) and passes it down, so the live probe describes the drivers the
/// loader will really try; nothing here reads the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VulkanEnv {
    /// The variable that chose the manifests and its value; `None` when neither is set.
    pub driver_files: Option<(&'static str, OsString)>,
}

impl VulkanEnv {
    /// The loader's variables in its order of precedence (an empty value counts as unset).
    const DRIVER_FILES_VARS: [&'static str; 2] = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"];

    /// Resolves the variables through `get` (the command layer passes `std::env::var_os`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> VulkanEnv {
        VulkanEnv {
            driver_files: Self::DRIVER_FILES_VARS
                .iter()
                .find_map(|&var| Some((var, get(var).filter(|s| !s.is_empty())?))),
        }
    }
}

/// Probes the loader and every ICD manifest under `root`. `env` counts only on the live system
/// (an image's drivers are not chosen by this process's environment).
pub fn probe(root: &Root, env: &VulkanEnv) -> Vulkan {
    let mut v = Vulkan {
        loader: find_library(root, "libvulkan.so.1"),
        ..Vulkan::default()
    };
    let mut manifests = Vec::new();
    if let Some((var, val)) = env.driver_files.as_ref().filter(|_| root.is_live()) {
        v.override_var = Some(var.to_string());
        manifests.extend(
            val.to_string_lossy()
                .split(':')
                .filter(|p| p.ends_with(".json"))
                .map(String::from),
        );
    }
    if v.override_var.is_none() {
        for dir in ICD_DIRS {
            let mut names = root.list_dir(dir).unwrap_or_default();
            names.sort();
            manifests.extend(
                names
                    .into_iter()
                    .filter(|f| f.ends_with(".json"))
                    .map(|f| format!("{dir}/{f}")),
            );
        }
    }
    for path in manifests {
        let Some(text) = root.read_optional(&path).ok().flatten() else {
            v.bad_manifests.push(format!("{path}: unreadable"));
            continue;
        };
        let lib = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|j| {
                j.get("ICD")?
                    .get("library_path")?
                    .as_str()
                    .map(String::from)
            });
        let Some(library) = lib else {
            v.bad_manifests
                .push(format!("{path}: not an ICD manifest (no ICD.library_path)"));
            continue;
        };
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let resolved = if library.contains('/') {
            let abs = if library.starts_with('/') {
                library.clone()
            } else {
                format!("{dir}/{library}")
            };
            root.exists_resolved(&abs).then_some(abs)
        } else {
            find_library(root, &library)
        };
        let is_nvidia = library.contains("nvidia") || path.contains("nvidia");
        let load = match &resolved {
            None => Load::NoLibrary,
            Some(p) if root.is_live() => dlopen(p),
            Some(p) => walk(root, p, is_nvidia),
        };
        v.icds.push(Icd {
            manifest: path,
            library,
            resolved,
            is_nvidia,
            load,
        });
    }
    v
}

/// Tries the real dynamic loader on `path` and reads its error.
pub fn dlopen(path: &str) -> Load {
    let Ok(c) = CString::new(path) else {
        return Load::Fails {
            error: format!("{path:?} contains a NUL byte"),
        };
    };
    // SAFETY: `c` is a valid C string; dlopen runs the library's constructors, exactly what the
    // Vulkan loader does with the same file. RTLD_NODELETE keeps it mapped after dlclose so no
    // handler it registered can be left pointing at unmapped code. dlerror is read right after
    // the failing call on this thread, and its string copied before any other dl* call.
    unsafe {
        let h = libc::dlopen(
            c.as_ptr(),
            libc::RTLD_LAZY | libc::RTLD_LOCAL | libc::RTLD_NODELETE,
        );
        if !h.is_null() {
            libc::dlclose(h);
            return Load::Loads;
        }
        let e = libc::dlerror();
        let msg = if e.is_null() {
            "dlopen failed without a message".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        };
        from_loader_error(path, &msg)
    }
}

/// Turns the loader's message into a [`Load`]: "libGLdispatch.so.0: cannot open shared object
/// file: No such file or directory" names the missing dependency.
fn from_loader_error(path: &str, msg: &str) -> Load {
    if let Some((soname, _)) = msg.split_once(": cannot open shared object file") {
        let soname = soname
            .rsplit('/')
            .next()
            .unwrap_or(soname)
            .trim()
            .to_string();
        let own = path.rsplit('/').next().unwrap_or(path);
        if soname != own {
            return Load::Missing {
                package: package_for(&soname).map(String::from),
                needed_by: own.to_string(),
                soname,
            };
        }
    }
    Load::Fails {
        error: msg.trim().to_string(),
    }
}

/// The directories listed in `ROOT/etc/ld.so.conf.d/*.conf` (plain paths only).
fn ld_conf_dirs(root: &Root) -> Vec<String> {
    let mut out = Vec::new();
    let mut files = root.list_dir("/etc/ld.so.conf.d").unwrap_or_default();
    files.sort();
    for f in files.iter().filter(|f| f.ends_with(".conf")) {
        if let Some(t) = root
            .read_optional(format!("/etc/ld.so.conf.d/{f}"))
            .ok()
            .flatten()
        {
            out.extend(
                t.lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with('/'))
                    .map(String::from),
            );
        }
    }
    out
}

/// Walks the ELF dependencies of `path` inside `root` as the dynamic loader would search them.
pub fn walk(root: &Root, path: &str, is_nvidia: bool) -> Load {
    let has_libc = LIB_DIRS
        .iter()
        .any(|d| root.exists_resolved(format!("{d}/libc.so.6")));
    let extra = ld_conf_dirs(root);
    let mut seen = BTreeSet::new();
    let mut queue = vec![path.to_string()];
    let mut first = true;
    while let Some(lib) = queue.pop() {
        let name = lib.rsplit('/').next().unwrap_or(&lib).to_string();
        // `resolve` gives the system path inside the root; read it through the root.
        let bytes = root
            .resolve(&lib)
            .and_then(|p| std::fs::read(root.path(p)).ok())
            .unwrap_or_default();
        let dynamic = match elf::dynamic(&bytes) {
            Ok(d) => d,
            Err(e) if first => {
                // A stand-in file: fall back to the dependencies known by name.
                if is_nvidia {
                    if let Some(dep) = NVIDIA_ICD_DEPS
                        .iter()
                        .find(|d| find_library(root, d).is_none())
                    {
                        return Load::Missing {
                            soname: dep.to_string(),
                            needed_by: name,
                            package: package_for(dep).map(String::from),
                        };
                    }
                }
                return Load::Unverified {
                    why: format!("{lib}: {e}"),
                };
            }
            Err(_) => continue,
        };
        first = false;
        let origin = lib.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        for dep in dynamic.needed {
            if !seen.insert(dep.clone()) || (!has_libc && c_runtime(&dep)) {
                continue;
            }
            let dirs = dynamic
                .runpath
                .iter()
                .map(|r| r.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
                .chain(LIB_DIRS.iter().map(|d| d.to_string()))
                .chain(extra.iter().cloned());
            let found = dirs
                .map(|d| format!("{d}/{dep}"))
                .find(|p| root.exists_resolved(p));
            match found {
                Some(p) => queue.push(p),
                None => {
                    return Load::Missing {
                        package: package_for(&dep).map(String::from),
                        soname: dep,
                        needed_by: name,
                    }
                }
            }
        }
    }
    Load::Loads
}

/// Why Vulkan has no GPU to offer on this system, from the files: the loader missing, no driver
/// manifest, or a driver whose library cannot load (its missing dependency and package named).
/// `None` when every driver loads. `run --list-devices`, the engine's "no device" error and
/// doctor's vulkan check all say this.
pub fn no_device_cause(v: &Vulkan) -> Option<String> {
    if v.loader.is_none() {
        return Some(
            "the Vulkan loader (libvulkan.so.1) is not installed: sudo apt install libvulkan1"
                .into(),
        );
    }
    let broken: Vec<&Icd> = v.icds.iter().filter(|i| i.problem().is_some()).collect();
    let pick = broken
        .iter()
        .find(|i| i.is_nvidia)
        .or_else(|| broken.first());
    if let Some(icd) = pick {
        let mut s = icd.problem().unwrap_or_default();
        if let Load::Missing {
            package: Some(p), ..
        } = &icd.load
        {
            s.push_str(&format!(": sudo apt install {p}"));
        }
        return Some(s);
    }
    if v.icds.is_empty() {
        return Some(match &v.override_var {
            Some(var) => format!("{var} names no readable ICD manifest"),
            None => format!(
                "no Vulkan driver is installed (no ICD manifest in {})",
                ICD_DIRS.join(", ")
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_messages_name_the_missing_dependency() {
        let l = from_loader_error(
            "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0",
            "libGLdispatch.so.0: cannot open shared object file: No such file or directory",
        );
        assert_eq!(
            l,
            Load::Missing {
                soname: "libGLdispatch.so.0".into(),
                needed_by: "libGLX_nvidia.so.0".into(),
                package: Some("libglvnd0".into()),
            }
        );
        let l = from_loader_error("/x/libfoo.so", "/x/libfoo.so: invalid ELF header");
        assert!(matches!(l, Load::Fails { .. }));
        assert_eq!(package_for("libXext.so.6"), Some("libxext6"));
        assert_eq!(package_for("libnvidia-glcore.so.580.95.05"), None);
    }

    #[test]
    fn driver_files_follow_the_loaders_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            VulkanEnv::from_lookup(|name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            })
        };
        assert_eq!(env(&[]).driver_files, None);
        assert_eq!(
            env(&[("VK_ICD_FILENAMES", "/a.json")]).driver_files,
            Some(("VK_ICD_FILENAMES", "/a.json".into()))
        );
        // VK_DRIVER_FILES wins; an empty value counts as unset.
        assert_eq!(
            env(&[
                ("VK_ICD_FILENAMES", "/a.json"),
                ("VK_DRIVER_FILES", "/b.json")
            ])
            .driver_files,
            Some(("VK_DRIVER_FILES", "/b.json".into()))
        );
        assert_eq!(
            env(&[("VK_DRIVER_FILES", ""), ("VK_ICD_FILENAMES", "/a.json")]).driver_files,
            Some(("VK_ICD_FILENAMES", "/a.json".into()))
        );
    }

    #[test]
    fn another_root_ignores_this_processs_driver_files() {
        let dir = tempfile::tempdir().unwrap();
        let icd = dir.path().join("usr/share/vulkan/icd.d");
        std::fs::create_dir_all(&icd).unwrap();
        std::fs::write(
            icd.join("lvp_icd.x86_64.json"),
            r#"{"ICD": {"library_path": "/usr/lib/libvulkan_lvp.so"}}"#,
        )
        .unwrap();
        let env = VulkanEnv {
            driver_files: Some(("VK_DRIVER_FILES", "/elsewhere/nvidia_icd.json".into())),
        };
        let v = probe(&Root::new(dir.path()), &env);
        assert_eq!(v.override_var, None);
        let manifests: Vec<&str> = v.icds.iter().map(|i| i.manifest.as_str()).collect();
        assert_eq!(manifests, ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"]);
    }
}
