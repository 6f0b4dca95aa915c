//! The target kernel's API, read from its headers before anything is built: the kernel changes
//! that the pinned driver cannot compile against, found by reading declarations in the source
//! tree's `include/` (the same files the compiler will read), so setup can apply a compatibility
//! patch of its own or refuse in the plan instead of failing twenty minutes into the build.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// A kernel API change the probe knows how to detect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiChange {
    /// `pci_resize_resource()` takes a fourth argument, `exclude_bars` (Linux 6.19, commit
    /// 337b1b566db0, and stable kernels it was backported to, e.g. Debian's 6.1.0-57).
    PciResizeResourceExcludeBars,
}

impl ApiChange {
    /// Every change the probe knows, in the order it checks them.
    pub const ALL: &'static [ApiChange] = &[ApiChange::PciResizeResourceExcludeBars];

    /// What changed, in words.
    pub fn describe(self) -> &'static str {
        match self {
            ApiChange::PciResizeResourceExcludeBars => {
                "pci_resize_resource() takes 4 arguments (the exclude_bars argument of Linux 6.19)"
            }
        }
    }

    /// The opposite, in words.
    pub fn describe_absent(self) -> &'static str {
        match self {
            ApiChange::PciResizeResourceExcludeBars => "pci_resize_resource() takes 3 arguments",
        }
    }
}

/// What the headers say about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The kernel has the change.
    Present {
        /// The header line (file and text) that shows it.
        evidence: String,
    },
    /// The kernel does not have it.
    Absent {
        /// The header line that shows the old form.
        evidence: String,
    },
    /// The headers could not tell (missing file, declaration not found).
    Unknown {
        /// What could not be found.
        why: String,
    },
}

/// One probed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The change probed.
    pub change: ApiChange,
    /// What the target kernel's headers say about it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Probes every known change in the kernel source tree `source` (the tree holding
/// `include/linux/*.h`; with Debian's or Pi OS's split headers, `/lib/modules/<rel>/source`).
pub fn probe(source: &Path) -> Vec<Check> {
    ApiChange::ALL
        .iter()
        .map(|&change| Check {
            change,
            verdict: match change {
                ApiChange::PciResizeResourceExcludeBars => pci_resize_resource(source),
            },
        })
        .collect()
}

fn pci_resize_resource(source: &Path) -> Verdict {
    let header = source.join("include/linux/pci.h");
    let text = match fs::read(&header) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            return Verdict::Unknown {
                why: format!("cannot read {}: {e}", header.display()),
            }
        }
    };
    match declared_arity(&text, "pci_resize_resource") {
        Some((n, line)) => {
            let evidence = format!("{}:{line}: {n} parameters", header.display());
            if n >= 4 {
                Verdict::Present { evidence }
            } else {
                Verdict::Absent { evidence }
            }
        }
        None => Verdict::Unknown {
            why: format!(
                "{} declares no pci_resize_resource() prototype",
                header.display()
            ),
        },
    }
}

/// The number of parameters of the prototype of `func` in a C header, and its 1-based line.
/// Only a declaration counts: the name followed by `(` and a parameter list ending in `);`,
/// possibly over several lines. Comments are ignored; a `void` list counts as 0.
pub fn declared_arity(text: &str, func: &str) -> Option<(usize, usize)> {
    let clean = strip_comments(text);
    let bytes = clean.as_bytes();
    let mut from = 0;
    while let Some(pos) = clean[from..].find(func) {
        let start = from + pos;
        from = start + func.len();
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let rest = clean[from..].trim_start();
        // In a declaration the name follows its return type, not `=`, `(`, `,` or `return`.
        let lead = clean[..start].trim_end();
        let is_call =
            lead.ends_with(['=', '(', ',', '!', '&', '|', '?', ':']) || lead.ends_with("return");
        if !before_ok || is_call || !rest.starts_with('(') {
            continue;
        }
        // Find the matching parenthesis.
        let open = clean.len() - rest.len();
        let mut depth = 0usize;
        let mut close = None;
        for (i, c) in clean[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close?;
        // A declaration ends with `;` (after optional attributes); a call or a macro does not
        // look like `type name(params);` at file scope, but a definition has `{`.
        let after = clean[close + 1..].trim_start();
        if !after.starts_with(';') {
            continue;
        }
        let params = clean[open + 1..close].trim();
        let n = if params.is_empty() || params == "void" {
            0
        } else {
            split_top_level(params)
        };
        let line = clean[..start].matches('\n').count() + 1;
        return Some((n, line));
    }
    None
}

fn split_top_level(params: &str) -> usize {
    let mut depth = 0i32;
    let mut n = 1;
    for c in params.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => n += 1,
            _ => {}
        }
    }
    n
}

/// Replaces C comments with spaces, keeping newlines (so line numbers stay right).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut prev = ' ';
            for d in chars.by_ref() {
                if d == '\n' {
                    out.push('\n');
                }
                if prev == '*' && d == '/' {
                    break;
                }
                prev = d;
            }
            out.push(' ');
        } else if c == '/' && chars.peek() == Some(&'/') {
            for d in chars.by_ref() {
                if d == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_of_real_prototype_shapes() {
        // Linux 6.18 and older (one line), and 6.19 / Debian 6.1.0-57 (wrapped).
        let old = "u32 pci_rebar_get_possible_sizes(struct pci_dev *pdev, int bar);\nint __must_check pci_resize_resource(struct pci_dev *dev, int i, int size);\n";
        assert_eq!(declared_arity(old, "pci_resize_resource"), Some((3, 2)));
        let new = "/* pci_resize_resource(a, b) in a comment */\nint __must_check pci_resize_resource(struct pci_dev *dev, int i, int size,\n\t\t\t\t     int exclude_bars);\n";
        assert_eq!(declared_arity(new, "pci_resize_resource"), Some((4, 2)));
        // A call, a longer name and a definition are not the prototype.
        let noise = "static inline int pci_resize_resource_x(int a);\nr = pci_resize_resource(dev, 1, 2) + 1;\n\treturn pci_resize_resource(dev, 1, 2);\nr = pci_resize_resource(d, 1, 2);\nint pci_resize_resource(struct pci_dev *d, int i, int s) { return 0; }\n";
        assert_eq!(declared_arity(noise, "pci_resize_resource"), None);
        assert_eq!(declared_arity("void f(void);", "f"), Some((0, 1)));
        assert_eq!(
            declared_arity("int g(void (*cb)(int, int), int x);", "g"),
            Some((2, 1))
        );
    }

    #[test]
    fn missing_header_is_unknown_not_a_guess() {
        let t = tempfile::TempDir::new().unwrap();
        let c = probe(t.path());
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0].verdict, Verdict::Unknown { why } if why.contains("include/linux/pci.h")),
            "{c:?}"
        );
    }
}
