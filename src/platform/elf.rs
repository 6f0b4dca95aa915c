//! The dynamic section of a shared library (64-bit little-endian ELF, what aarch64 and x86-64
//! use): the sonames it needs (`DT_NEEDED`) and where it asks to look (`DT_RUNPATH`/`DT_RPATH`).
//! Lets doctor tell, under a root that is not this machine, which dependency of a Vulkan
//! driver is missing without loading anything.

use thiserror::Error;

/// Why an ELF file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    #[error("elf: not an ELF file")]
    NotElf,
    /// Not a 64-bit little-endian file.
    #[error("elf: only 64-bit little-endian files are read (class {class}, data {data})")]
    Unsupported {
        /// `EI_CLASS` (1: 32-bit, 2: 64-bit).
        class: u8,
        /// `EI_DATA` (1: little-endian, 2: big-endian).
        data: u8,
    },
    /// A header or table points past the end of the file.
    #[error("elf: {what} at offset {offset} runs past the end of the {len}-byte file")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Its offset in the file, in bytes.
        offset: u64,
        /// Length of the file, in bytes.
        len: usize,
    },
}

/// What the dynamic linker reads from a library before it can load it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `DT_NEEDED` entries: the sonames the library links against, in order.
    pub needed: Vec<String>,
    /// Directories from `DT_RUNPATH` and `DT_RPATH`, split at `:`, `$ORIGIN` unexpanded.
    pub runpath: Vec<String>,
}

const SHT_DYNAMIC: u32 = 6;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

fn slice<'a>(b: &'a [u8], off: u64, n: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
    let end = off.checked_add(n).filter(|e| *e <= b.len() as u64);
    match end {
        Some(e) => Ok(&b[off as usize..e as usize]),
        None => Err(ElfError::Truncated {
            what,
            offset: off,
            len: b.len(),
        }),
    }
}

fn u16_at(b: &[u8], off: u64, what: &'static str) -> Result<u16, ElfError> {
    let s = slice(b, off, 2, what)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], off: u64, what: &'static str) -> Result<u32, ElfError> {
    let s = slice(b, off, 4, what)?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}
fn u64_at(b: &[u8], off: u64, what: &'static str) -> Result<u64, ElfError> {
    let s = slice(b, off, 8, what)?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// A NUL-terminated string at `off` of the string table `strtab`.
fn c_str(strtab: &[u8], off: u64) -> Option<String> {
    let rest = strtab.get(off as usize..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Reads the dynamic section through the section headers.
pub fn dynamic(bytes: &[u8]) -> Result<Dynamic, ElfError> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let (class, data) = (bytes[4], bytes[5]);
    if class != 2 || data != 1 {
        return Err(ElfError::Unsupported { class, data });
    }
    let shoff = u64_at(bytes, 0x28, "section header offset")?;
    let shentsize = u64::from(u16_at(bytes, 0x3a, "section header size")?);
    let shnum = u64::from(u16_at(bytes, 0x3c, "section count")?);
    let section = |i: u64| -> Result<(u32, u64, u64, u32), ElfError> {
        // Saturating: a garbage header must give a Truncated error, not an overflow.
        let at = |k: u64| {
            shoff
                .saturating_add(i.saturating_mul(shentsize))
                .saturating_add(k)
        };
        Ok((
            u32_at(bytes, at(4), "section type")?,
            u64_at(bytes, at(24), "section offset")?,
            u64_at(bytes, at(32), "section size")?,
            u32_at(bytes, at(40), "section link")?,
        ))
    };
    let mut out = Dynamic::default();
    for i in 0..shnum {
        let (kind, off, size, link) = section(i)?;
        if kind != SHT_DYNAMIC {
            continue;
        }
        let (_, str_off, str_size, _) = section(u64::from(link))?;
        let strtab = slice(bytes, str_off, str_size, "dynamic string table")?;
        let dynsec = slice(bytes, off, size, "dynamic section")?;
        for entry in dynsec.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            let val = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
            match tag {
                DT_NULL => break,
                DT_NEEDED => out.needed.extend(c_str(strtab, val)),
                DT_RPATH | DT_RUNPATH => {
                    if let Some(p) = c_str(strtab, val) {
                        out.runpath
                            .extend(p.split(':').filter(|s| !s.is_empty()).map(String::from));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_library_and_refuses_junk() {
        // The test binary itself is a 64-bit little-endian ELF on every host CI runs on.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let d = dynamic(&exe).unwrap();
        assert!(d.needed.iter().any(|n| n.starts_with("libc.so")), "{d:?}");
        assert_eq!(dynamic(b"elf"), Err(ElfError::NotElf));
        assert!(matches!(
            dynamic(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0"),
            Err(ElfError::Unsupported { class: 1, .. })
        ));
        let mut cut = exe[..0x30].to_vec();
        cut[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(dynamic(&cut), Err(ElfError::Truncated { .. })));
    }
}
