//! Kernel modules under a root: which modules exist for a kernel release
//! (`ROOT/lib/modules/<release>`, through libkmod via the `kmod` crate, so the lookup is the one
//! `modprobe` does), their `modinfo` fields (version, vermagic), and which are loaded
//! (`ROOT/proc/modules`, `ROOT/sys/module/<name>/version`).

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Root;

/// Why kernel module information could not be read.
#[derive(Debug, Error)]
pub enum KmodError {
    /// libkmod could not open the module directory.
    #[error("kmod: cannot open a libkmod context for {dir}: {msg}")]
    Context {
        /// The `/lib/modules/<release>` directory (inside the root).
        dir: PathBuf,
        /// libkmod's error, as text.
        msg: String,
    },
    /// A module name with a NUL byte, which libkmod cannot take.
    #[error("kmod: module name {0:?} contains a NUL byte")]
    BadName(String),
    /// Reading `/proc/modules` or a module file failed.
    #[error("kmod: cannot read {path}: {source}")]
    Read {
        /// The file read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A module file found for a kernel release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModuleInfo {
    /// As the kernel names it (`nvidia_drm`, dashes become underscores).
    pub name: String,
    /// Absolute path inside the root (`/lib/modules/<rel>/updates/dkms/nvidia.ko`).
    pub path: PathBuf,
    /// `modinfo -F version`.
    pub version: Option<String>,
    /// `modinfo -F vermagic`: the kernel release (and flags) it was built for.
    pub vermagic: Option<String>,
    /// `modinfo -F license`.
    pub license: Option<String>,
    /// `modinfo -F depends`, split.
    pub depends: Vec<String>,
}

/// A line of `/proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadedModule {
    /// Module name as `/proc/modules` gives it.
    pub name: String,
    /// Memory the module takes, in bytes.
    pub size: u64,
    /// Use count (0 when the field does not parse).
    pub refcount: i64,
    /// Modules that use this one.
    pub used_by: Vec<String>,
}

/// The modules directory for a kernel release, as a system path (`/lib/modules/<rel>`).
pub fn modules_dir(release: &str) -> String {
    format!("/lib/modules/{release}")
}

/// Looks up a module by name in the root's module tree for `release`, the way `modprobe`
/// would (libkmod reading `modules.dep.bin`). `Ok(None)`: libkmod does not know it — either it
/// is not installed or `depmod` was not run (see [`module_files`]).
pub fn find_module(
    root: &Root,
    release: &str,
    name: &str,
) -> Result<Option<ModuleInfo>, KmodError> {
    let dir = root.path(modules_dir(release));
    let ctx = kmod::Context::new_with_dirname(&dir).map_err(|e| KmodError::Context {
        dir: dir.clone(),
        msg: e.to_string(),
    })?;
    let module = match ctx.module_new_from_name(name) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let Some(path) = module.path().map(PathBuf::from) else {
        return Ok(None);
    };
    let path = if path.is_absolute() {
        path
    } else {
        dir.join(path)
    };
    let info = modinfo(&dir, name)?;
    let field = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    Ok(Some(ModuleInfo {
        name: module.name().to_string_lossy().into_owned(),
        path: unroot(root, &path),
        version: field("version"),
        vermagic: field("vermagic"),
        license: field("license"),
        depends: field("depends")
            .map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

/// Every module file under `/lib/modules/<release>` whose name starts with `prefix`
/// (`nvidia` → nvidia.ko, nvidia-drm.ko.xz …), whether or not depmod indexed it. System paths.
pub fn module_files(root: &Root, release: &str, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.path(modules_dir(release))];
    // Bounded walk: a module tree has a few thousand files; `build`/`source` are symlinks to
    // kernel sources and are not followed.
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && name.starts_with(prefix) && is_module_file(&name) {
                out.push(unroot(root, &e.path()));
            }
        }
    }
    out.sort();
    out
}

fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The modules loaded now, from `ROOT/proc/modules`. `Ok(None)` when that file is absent
/// (a mounted image, a container without /proc).
pub fn loaded_modules(root: &Root) -> Result<Option<Vec<LoadedModule>>, KmodError> {
    let text = root
        .read_optional("/proc/modules")
        .map_err(|source| KmodError::Read {
            path: root.path("/proc/modules"),
            source,
        })?;
    Ok(text.map(|t| parse_proc_modules(&t)))
}

/// `nvidia 8437760 … ` lines: name size refcount used-by state address.
fn parse_proc_modules(text: &str) -> Vec<LoadedModule> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            let name = w.next()?.to_string();
            let size = w.next()?.parse().ok()?;
            let refcount = w.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            let used_by = w
                .next()
                .map(|u| {
                    u.split(',')
                        .filter(|s| !s.is_empty() && *s != "-")
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some(LoadedModule {
                name,
                size,
                refcount,
                used_by,
            })
        })
        .collect()
}

/// The version a loaded module reports (`ROOT/sys/module/<name>/version`).
pub fn loaded_version(root: &Root, name: &str) -> Option<String> {
    root.read_optional(format!("/sys/module/{}/version", name.replace('-', "_")))
        .ok()
        .flatten()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Maps a host path under the root back to the system path it stands for.
fn unroot(root: &Root, p: &Path) -> PathBuf {
    match p.strip_prefix(root.dir()) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// `modinfo` key/value pairs through libkmod (`kmod_module_get_info`); the `kmod` crate has no
/// call for it, so this goes to `kmod-sys` directly. Empty when the module cannot be read.
fn modinfo(dir: &Path, name: &str) -> Result<Vec<(String, String)>, KmodError> {
    use std::os::unix::ffi::OsStrExt;
    let cdir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| KmodError::BadName(dir.display().to_string()))?;
    let cname = CString::new(name).map_err(|_| KmodError::BadName(name.to_string()))?;
    let mut out = Vec::new();
    // SAFETY: `cdir` and `cname` are valid NUL-terminated strings that outlive the calls; every
    // object libkmod hands out (context, module, info list) is released below exactly once,
    // after its last use, and strings read from the list are copied before it is freed.
    unsafe {
        let ctx = kmod_sys::kmod_new(cdir.as_ptr(), std::ptr::null());
        if ctx.is_null() {
            return Err(KmodError::Context {
                dir: dir.to_path_buf(),
                msg: "kmod_new returned NULL".into(),
            });
        }
        let mut module = std::ptr::null_mut();
        if kmod_sys::kmod_module_new_from_name(ctx, cname.as_ptr(), &mut module) == 0
            && !module.is_null()
        {
            let mut list = std::ptr::null_mut();
            if kmod_sys::kmod_module_get_info(module, &mut list) >= 0 {
                let mut it = list;
                while !it.is_null() {
                    let k = kmod_sys::kmod_module_info_get_key(it);
                    let v = kmod_sys::kmod_module_info_get_value(it);
                    if !k.is_null() {
                        let key = CStr::from_ptr(k).to_string_lossy().into_owned();
                        let value = if v.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(v).to_string_lossy().into_owned()
                        };
                        out.push((key, value));
                    }
                    it = kmod_sys::kmod_list_next(list, it);
                }
                kmod_sys::kmod_module_info_free_list(list);
            }
            kmod_sys::kmod_module_unref(module);
        }
        kmod_sys::kmod_unref(ctx);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_lines() {
        let t = "nvidia_uvm 1892352 0 - Live 0x0000000000000000 (O)\n\
                 nvidia 8437760 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (O)\n\
                 garbage\n";
        let m = parse_proc_modules(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].name, "nvidia");
        assert_eq!(m[1].refcount, 2);
        assert_eq!(m[1].used_by, vec!["nvidia_uvm", "nvidia_modeset"]);
        assert!(m[0].used_by.is_empty());
    }

    #[test]
    fn missing_tree_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(
            find_module(&root, "6.12.47+rpt-rpi-v8", "nvidia").unwrap(),
            None
        );
        assert!(module_files(&root, "6.12.47+rpt-rpi-v8", "nvidia").is_empty());
        assert_eq!(loaded_modules(&root).unwrap(), None);
    }
}

/// Bytes of a minimal ELF64 relocatable object whose `.modinfo` section holds `fields`
/// (`key=value`, NUL-separated, as the kernel's `MODULE_INFO` lays them out). libkmod and
/// `depmod` read it like a real `.ko`; tests use it to build fake module trees without a kernel
/// build.
pub fn fake_module_elf(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut modinfo = Vec::new();
    for (k, v) in fields {
        modinfo.extend_from_slice(format!("{k}={v}\0").as_bytes());
    }
    let shstrtab = b"\0.modinfo\0.shstrtab\0.symtab\0.strtab\0";
    // One empty symbol table so depmod finds the section it looks for.
    let symtab = [0u8; 24];
    let strtab = b"\0";
    let mut data = Vec::new();
    let base = 64usize;
    let off_modinfo = base;
    data.extend_from_slice(&modinfo);
    let off_shstr = base + data.len();
    data.extend_from_slice(shstrtab);
    while !(base + data.len()).is_multiple_of(8) {
        data.push(0);
    }
    let off_sym = base + data.len();
    data.extend_from_slice(&symtab);
    let off_str = base + data.len();
    data.extend_from_slice(strtab);
    while !(base + data.len()).is_multiple_of(8) {
        data.push(0);
    }
    let shoff = base + data.len();
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    out.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // entry
    out.extend_from_slice(&0u64.to_le_bytes()); // phoff
    out.extend_from_slice(&(shoff as u64).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    out.extend_from_slice(&0u16.to_le_bytes()); // phentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // phnum
    out.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    out.extend_from_slice(&5u16.to_le_bytes()); // shnum
    out.extend_from_slice(&2u16.to_le_bytes()); // shstrndx
    out.extend_from_slice(&data);
    // (name, type, flags, offset, size, link, info, align, entsize)
    type SectionHeader = (u32, u32, u64, usize, usize, u32, u32, u64, u64);
    let sections: [SectionHeader; 5] = [
        (0, 0, 0, 0, 0, 0, 0, 0, 0),
        (1, 1, 2, off_modinfo, modinfo.len(), 0, 0, 1, 0),
        (10, 3, 0, off_shstr, shstrtab.len(), 0, 0, 1, 0),
        (20, 2, 0, off_sym, symtab.len(), 4, 1, 8, 24),
        (28, 3, 0, off_str, strtab.len(), 0, 0, 1, 0),
    ];
    for (name, ty, flags, off, size, link, info, align, entsize) in sections {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(off as u64).to_le_bytes());
        out.extend_from_slice(&(size as u64).to_le_bytes());
        out.extend_from_slice(&link.to_le_bytes());
        out.extend_from_slice(&info.to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&entsize.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod depmod_tests {
    use super::*;

    /// A fake module tree indexed by the real `depmod -b`, read back through libkmod.
    #[test]
    fn finds_modules_and_versions_in_a_depmod_tree() {
        let depmod = ["/usr/sbin/depmod", "/sbin/depmod"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(depmod) = depmod else {
            if std::env::var_os("PIGPU_REQUIRE_MODELS").is_some() {
                panic!("depmod (package kmod) is required for this test");
            }
            eprintln!("SKIPPING: depmod not installed (apt-get install kmod)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let rel = "6.12.47+rpt-rpi-v8";
        let mdir = dir
            .path()
            .join("lib/modules")
            .join(rel)
            .join("updates/dkms");
        std::fs::create_dir_all(&mdir).unwrap();
        for (file, name) in [("nvidia.ko", "nvidia"), ("nvidia-drm.ko", "nvidia_drm")] {
            let elf = fake_module_elf(&[
                ("version", "580.95.05"),
                ("license", "Dual MIT/GPL"),
                ("name", name),
                (
                    "vermagic",
                    "6.12.47+rpt-rpi-v8 SMP preempt mod_unload modversions aarch64",
                ),
                ("depends", if name == "nvidia" { "" } else { "nvidia,drm" }),
            ]);
            std::fs::write(mdir.join(file), elf).unwrap();
        }
        let st = std::process::Command::new(depmod)
            .args(["-b", dir.path().to_str().unwrap(), rel])
            .status()
            .unwrap();
        assert!(st.success(), "depmod -b failed");
        let m = find_module(&root, rel, "nvidia")
            .unwrap()
            .expect("nvidia indexed");
        assert_eq!(m.version.as_deref(), Some("580.95.05"));
        assert_eq!(
            m.path,
            PathBuf::from(format!("/lib/modules/{rel}/updates/dkms/nvidia.ko"))
        );
        assert!(m.vermagic.unwrap().starts_with(rel));
        let d = find_module(&root, rel, "nvidia-drm")
            .unwrap()
            .expect("nvidia_drm indexed");
        assert_eq!(d.name, "nvidia_drm");
        assert_eq!(d.depends, vec!["nvidia", "drm"]);
        assert_eq!(find_module(&root, rel, "nouveau").unwrap(), None);
        assert_eq!(module_files(&root, rel, "nvidia").len(), 2);
    }
}
