//! Model names as users type them (`ORG/NAME[:QUANT]`, also behind `hf.co/`), quant tags read
//! from GGUF file names, split-file detection, and which quant to take when none is asked for.
//! Pure functions: no I/O, so every rule here is unit-tested.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use super::HubError;

/// A Hugging Face repository and, optionally, the quant asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// `ORG/NAME`, as the Hub spells it.
    pub repo: String,
    /// The quant tag asked for (`Q4_K_M`), upper-cased; `None` takes the default.
    pub quant: Option<String>,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.quant {
            Some(q) => write!(f, "{}:{q}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// Prefixes that name the Hub itself; what follows is the repo (`hf.co/ORG/NAME`, the form
/// `llama.cpp -hf` and Ollama accept).
const HUB_PREFIXES: &[&str] = &[
    "https://huggingface.co/",
    "https://hf.co/",
    "huggingface.co/",
    "hf.co/",
];

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with(['.', '-'])
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl ModelRef {
    /// Parses `ORG/NAME[:QUANT]`, with an optional `hf.co/` (or `huggingface.co/`) prefix.
    pub fn parse(text: &str) -> Result<ModelRef, HubError> {
        let bad = || HubError::BadName {
            name: text.to_string(),
        };
        let mut rest = text.trim();
        for p in HUB_PREFIXES {
            if let Some(r) = rest.strip_prefix(p) {
                rest = r;
                break;
            }
        }
        let (repo, quant) = match rest.rsplit_once(':') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (org, name) = repo.split_once('/').ok_or_else(bad)?;
        if !valid_part(org) || !valid_part(name) {
            return Err(bad());
        }
        let quant = match quant {
            None => None,
            Some(q) if valid_part(q) => Some(q.to_ascii_uppercase()),
            Some(_) => return Err(bad()),
        };
        Ok(ModelRef {
            repo: repo.to_string(),
            quant,
        })
    }

    /// Whether a command-line argument that is not an existing file should be read as a model
    /// name rather than a path: it parses as one and does not end in `.gguf` (`dir/m.gguf` is a
    /// path that is missing, and gets the "file does not exist" error).
    pub fn looks_like_name(text: &str) -> bool {
        !text.to_ascii_lowercase().ends_with(".gguf") && ModelRef::parse(text).is_ok()
    }
}

fn quant_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:I?Q[1-8](?:_[A-Z0-9]+)*|BF16|F16|F32|TQ[12]_0|MXFP4(?:_MOE)?)$")
            .expect("quant pattern")
    })
}

fn split_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)-(\d{5})-of-(\d{5})\.gguf$").expect("split pattern"))
}

/// The quant tag in a GGUF file name (`Llama-3.2-1B-Instruct-Q4_K_M.gguf` → `Q4_K_M`,
/// `qwen2.5-0.5b-instruct-q4_k_m.gguf` → `Q4_K_M`), upper-cased; the last segment between
/// `.`, `-` and `/` that looks like one.
pub fn quant_of(file: &str) -> Option<String> {
    let stem = split_re().replace(file, ".gguf");
    let stem = stem.strip_suffix(".gguf").unwrap_or(&stem);
    stem.split(['.', '-', '/'])
        .map(|s| s.to_ascii_uppercase())
        .rfind(|s| quant_re().is_match(s))
}

/// `(part, of)` for a split GGUF (`name-00001-of-00003.gguf`).
fn split_part(file: &str) -> Option<(u32, u32)> {
    let c = split_re().captures(file)?;
    Some((c[1].parse().ok()?, c[2].parse().ok()?))
}

/// Whether a repo file is a model to offer: a `.gguf` that is not a vision projector
/// (`mmproj-*.gguf`, which only makes sense beside its model).
pub fn is_model_file(file: &str) -> bool {
    let base = file.rsplit('/').next().unwrap_or(file).to_ascii_lowercase();
    base.ends_with(".gguf") && !base.starts_with("mmproj")
}

/// The quants taken when none is asked for, best first: Q4_K_M is the usual balance of size
/// and quality (llama.cpp's `-hf` and Ollama default to it); then other block formats pigpu's
/// engines run; the IQ formats last (not supported by pigpu's engines yet).
const DEFAULT_ORDER: &[&str] = &[
    "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q6_K", "Q8_0",
    "Q3_K_M", "Q3_K_L", "Q3_K_S", "Q2_K", "F16", "BF16", "F32",
];

/// A GGUF file of a repo as a candidate for a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Path inside the repo.
    pub file: String,
    pub quant: Option<String>,
    /// `Some((1, n))` for the first part of a split file.
    pub split: Option<(u32, u32)>,
}

/// The model files of a repo listing, split files represented by their first part only.
pub fn candidates<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = files
        .into_iter()
        .filter(|f| is_model_file(f))
        .filter_map(|f| {
            let split = split_part(f);
            if split.is_some_and(|(part, _)| part != 1) {
                return None;
            }
            Some(Candidate {
                file: f.to_string(),
                quant: quant_of(f),
                split,
            })
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The label of a candidate in messages: its quant, else its file name.
pub fn label(c: &Candidate) -> String {
    c.quant.clone().unwrap_or_else(|| c.file.clone())
}

/// Picks the candidate for `quant` (case-insensitive), or the default when `None`: the first
/// of [`DEFAULT_ORDER`] present, whole files before split ones, else the first file by name.
/// `Err` carries the labels available, for the error message.
pub fn choose<'c>(
    cands: &'c [Candidate],
    quant: Option<&str>,
) -> Result<&'c Candidate, Vec<String>> {
    let labels = || {
        let mut l: Vec<String> = cands.iter().map(label).collect();
        l.dedup();
        l
    };
    if let Some(q) = quant {
        let q = q.to_ascii_uppercase();
        let mut hits: Vec<&Candidate> = cands
            .iter()
            .filter(|c| c.quant.as_deref() == Some(q.as_str()) || c.file.eq_ignore_ascii_case(&q))
            .collect();
        // Whole files first when a repo has both.
        hits.sort_by_key(|c| c.split.is_some());
        return hits.first().copied().ok_or_else(labels);
    }
    for split in [false, true] {
        for want in DEFAULT_ORDER {
            if let Some(c) = cands
                .iter()
                .find(|c| c.split.is_some() == split && c.quant.as_deref() == Some(*want))
            {
                return Ok(c);
            }
        }
    }
    cands
        .iter()
        .find(|c| c.split.is_none())
        .or(cands.first())
        .ok_or_else(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_prefix_and_quant() {
        let r = ModelRef::parse("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF").unwrap();
        assert_eq!(r.repo, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(r.quant, None);
        let r = ModelRef::parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:q4_k_m").unwrap();
        assert_eq!(r.repo, "bartowski/Llama-3.2-1B-Instruct-GGUF");
        assert_eq!(r.quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(r.to_string(), "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
        let r = ModelRef::parse("https://huggingface.co/a/b:Q8_0").unwrap();
        assert_eq!((r.repo.as_str(), r.quant.as_deref()), ("a/b", Some("Q8_0")));
        for bad in [
            "", "noslash", "a/b/c", "../x", "a/..", "a/b:", "a/b:x/y", "a /b", "/b",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad:?} parsed");
        }
        let e = ModelRef::parse("a/b/c").unwrap_err().to_string();
        assert!(e.contains("ORG/NAME"), "{e}");
    }

    #[test]
    fn paths_are_not_names() {
        assert!(ModelRef::looks_like_name("org/model-GGUF"));
        assert!(ModelRef::looks_like_name("org/model-GGUF:Q8_0"));
        assert!(!ModelRef::looks_like_name("models/m.gguf"));
        assert!(!ModelRef::looks_like_name("/abs/m"));
        assert!(!ModelRef::looks_like_name("./rel/m"));
        assert!(!ModelRef::looks_like_name("m.gguf"));
    }

    #[test]
    fn quant_tags_from_file_names() {
        let q = |f| quant_of(f);
        assert_eq!(
            q("Llama-3.2-1B-Instruct-Q4_K_M.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            q("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            q("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("Q4_1")
        );
        assert_eq!(q("gemma-3-270m-it-IQ4_XS.gguf").as_deref(), Some("IQ4_XS"));
        assert_eq!(q("model-f16.gguf").as_deref(), Some("F16"));
        assert_eq!(q("big-Q8_0-00002-of-00003.gguf").as_deref(), Some("Q8_0"));
        assert_eq!(q("Q6_K/model-Q6_K.gguf").as_deref(), Some("Q6_K"));
        assert_eq!(q("model-135M.gguf"), None);
        assert_eq!(split_part("big-Q8_0-00002-of-00003.gguf"), Some((2, 3)));
        assert_eq!(split_part("big-Q8_0.gguf"), None);
        assert!(!is_model_file("mmproj-model-f16.gguf"));
        assert!(!is_model_file("README.md"));
    }

    #[test]
    fn default_and_asked_quant() {
        let files = [
            "README.md",
            "m-Q2_K.gguf",
            "m-Q8_0.gguf",
            "m-Q4_K_M.gguf",
            "mmproj-m-f16.gguf",
            "m-F16-00001-of-00002.gguf",
            "m-F16-00002-of-00002.gguf",
        ];
        let c = candidates(files);
        assert_eq!(c.len(), 4, "{c:?}");
        assert_eq!(choose(&c, None).unwrap().file, "m-Q4_K_M.gguf");
        assert_eq!(choose(&c, Some("q8_0")).unwrap().file, "m-Q8_0.gguf");
        let f16 = choose(&c, Some("F16")).unwrap();
        assert_eq!(f16.split, Some((1, 2)));
        let missing = choose(&c, Some("Q5_K_M")).unwrap_err();
        assert_eq!(missing, ["F16", "Q2_K", "Q4_K_M", "Q8_0"]);
        // Only IQ quants and unknown names: the first whole file.
        let c = candidates(["x-IQ2_XS.gguf", "x-IQ4_XS.gguf"]);
        assert_eq!(choose(&c, None).unwrap().file, "x-IQ2_XS.gguf");
        assert!(choose(&[], None).is_err());
    }
}
