//! Shaped models: GGUF files with a real model's architecture, sizes, vocabulary size and
//! quantization mix, but random weights. They answer "how fast would Llama-3.1-8B be on this
//! card?" without a 5 GB download, and let pigpu and llama.cpp be benchmarked on the very same
//! file on a machine that cannot fetch real models.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use pigpu::model::shapes::{ShapeSpec, write};
//! let spec: ShapeSpec = "llama-3.2-3b:q4_k_m".parse()?;
//! let written = write(&spec, 1, std::path::Path::new("/tmp/3b.gguf"), 0)?;
//! println!("{} bytes", written.bytes);
//! # Ok(()) }
//! ```
//!
//! The parts, bottom up: `mix` (llama-quantize's per-tensor type rules), `shape` (what a shape
//! is: the struct and the enums it names), `family` (tensor names and metadata per
//! architecture), `vocab` (a synthetic BPE tokenizer of the right size), `catalog` (the named
//! shapes), `fill` (random finite blocks per format), `write` (parallel streaming to disk).

mod catalog;
mod family;
mod fill;
mod mix;
mod shape;
mod vocab;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use catalog::{find, SHAPES};
pub use family::Values;
pub use mix::{Mix, Role};
pub use shape::{Family, RopeScaling, Shape, VocabStyle};

use crate::gguf::{FileLayout, TensorEntry, Value};

/// Bumped whenever the bytes written for a given shape, mix and seed change, so cached files
/// from an older pigpu are not reused.
const GENERATOR_VERSION: u32 = 1;

/// Why a shape could not be named or written.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// No shape has this name.
    #[error("unknown shape '{name}' (known: {known}; see `pigpu shape list`)")]
    UnknownShape {
        /// The name asked for.
        name: String,
        /// Every shape name, comma-separated.
        known: String,
    },
    /// No quantization mix has this name.
    #[error("unknown quantization mix '{name}' (known: {known})")]
    UnknownMix {
        /// The name asked for.
        name: String,
        /// Every mix name, comma-separated.
        known: String,
    },
    /// Writing or renaming the shaped file failed.
    #[error("writing shaped model {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A shape with a mix: what `llama-3.2-3b:q4_k_m` names.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeSpec {
    /// The shape (dimensions, family, tokenizer style).
    pub shape: &'static Shape,
    /// Which ggml type each tensor gets.
    pub mix: Mix,
}

impl std::str::FromStr for ShapeSpec {
    type Err = ShapeError;
    /// `NAME[:MIX]`; without a mix, the shape's default (Q4_K_M for the real models).
    fn from_str(s: &str) -> Result<ShapeSpec, ShapeError> {
        let (name, mix) = match s.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (s, None),
        };
        let shape = find(name).ok_or_else(|| ShapeError::UnknownShape {
            name: name.to_string(),
            known: SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })?;
        let mix = match mix {
            None => shape.default_mix,
            Some(m) => Mix::from_name(m).ok_or_else(|| ShapeError::UnknownMix {
                name: m.to_string(),
                known: Mix::ALL.map(Mix::name).join(", "),
            })?,
        };
        Ok(ShapeSpec { shape, mix })
    }
}

impl std::fmt::Display for ShapeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.shape.name, self.mix)
    }
}

/// Everything about a file before its data is generated.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per tensor (same order as `layout.tensors`): how its values are made.
    pub tensors: Vec<family::TensorPlan>,
    /// The encoded header and where each tensor's data goes.
    pub layout: FileLayout,
}

impl Plan {
    /// Tensors per ggml type name, and bytes per type.
    pub fn type_counts(&self) -> BTreeMap<&'static str, (usize, u64)> {
        let mut m = BTreeMap::new();
        for t in &self.layout.tensors {
            let e = m.entry(t.ty.name()).or_insert((0, 0));
            e.0 += 1;
            e.1 += t.bytes;
        }
        m
    }
}

/// The tensor table of `spec`: each tensor with the type the mix gives it.
fn entries(spec: &ShapeSpec, tensors: &[family::TensorPlan]) -> Vec<TensorEntry> {
    let s = spec.shape;
    tensors
        .iter()
        .map(|t| {
            let ty = spec
                .mix
                .type_for(t.role, t.layer, s.n_layer, t.shape[0], s.tied_embeddings);
            debug_assert!(fill::supported(ty), "{ty} for {}", t.name);
            let n: u64 = t.shape.iter().product();
            TensorEntry {
                name: t.name.clone(),
                shape: t.shape.clone(),
                ty,
                // Every planned width is a whole number of blocks (the mix falls back otherwise).
                bytes: ty.bytes_for(n).unwrap_or(0),
            }
        })
        .collect()
}

/// Bytes of tensor data `spec` has (the file adds metadata and padding, a few MB at most).
pub fn data_bytes(spec: &ShapeSpec) -> u64 {
    let tensors = spec.shape.family.tensors(spec.shape);
    entries(spec, &tensors).iter().map(|e| e.bytes).sum()
}

/// Plans the file for `spec` with random stream `seed`: metadata, tensor table and layout.
pub fn plan(spec: &ShapeSpec, seed: u64) -> Plan {
    let s = spec.shape;
    let tensors = s.family.tensors(s);
    let entries = entries(spec, &tensors);
    let mut metadata = vec![
        (
            "general.architecture".into(),
            Value::String(s.family.arch().into()),
        ),
        ("general.type".into(), Value::String("model".into())),
        (
            "general.name".into(),
            Value::String(format!("{} (shape, random weights)", s.model)),
        ),
        (
            "general.size_label".into(),
            Value::String(s.size_label.into()),
        ),
        ("general.file_type".into(), Value::U32(spec.mix.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("pigpu.shape".into(), Value::String(spec.to_string())),
        ("pigpu.shape.seed".into(), Value::U64(seed)),
        (
            "pigpu.shape.generator_version".into(),
            Value::U32(GENERATOR_VERSION),
        ),
    ];
    metadata.extend(s.family.metadata(s));
    metadata.extend(vocab::metadata(s));
    let layout = FileLayout::new(3, &metadata, entries);
    Plan { tensors, layout }
}

/// What [`write`] produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// The shape and mix, as `NAME:MIX`.
    pub shape: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Length of the file, in bytes.
    pub bytes: u64,
    /// Number of tensors in it.
    pub tensors: usize,
    /// Seed the random weights were generated from.
    pub seed: u64,
    /// Tensor count and bytes per ggml type.
    pub types: BTreeMap<&'static str, (usize, u64)>,
    /// Seconds spent writing (near 0 when a cached file was used).
    pub seconds: f64,
    /// False when an existing cached file was used as it was.
    pub generated: bool,
}

/// Writes `spec` with `seed` to `path` using `threads` threads (0: all cores).
pub fn write(
    spec: &ShapeSpec,
    seed: u64,
    path: &Path,
    threads: usize,
) -> Result<Written, ShapeError> {
    let t0 = Instant::now();
    let plan = plan(spec, seed);
    write::write_file(&plan, seed, path, threads).map_err(|source| ShapeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(written(spec, seed, path, &plan, t0, true))
}

fn written(
    spec: &ShapeSpec,
    seed: u64,
    path: &Path,
    plan: &Plan,
    t0: Instant,
    generated: bool,
) -> Written {
    Written {
        shape: spec.to_string(),
        path: path.to_path_buf(),
        bytes: plan.layout.file_len,
        tensors: plan.layout.tensors.len(),
        seed,
        types: plan.type_counts(),
        seconds: t0.elapsed().as_secs_f64(),
        generated,
    }
}

/// Where [`cached`] keeps shaped models: `$PIGPU_SHAPE_CACHE`, else `$XDG_CACHE_HOME/pigpu/shapes`,
/// else `~/.cache/pigpu/shapes`, else under the temporary directory (`$TMPDIR`, else `/tmp`, as
/// `std::env::temp_dir` has it on Linux). `var` looks a variable up (the environment, in `cmd/`; a
/// map in tests), so nothing here reads the environment itself.
pub fn cache_dir_from(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(d) = set("PIGPU_SHAPE_CACHE") {
        return PathBuf::from(d);
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .or_else(|| set("TMPDIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("pigpu").join("shapes")
}

/// Where [`cached`] keeps `spec` with `seed` under the cache directory `dir` (the file may not
/// exist yet).
pub fn cache_path(dir: &Path, spec: &ShapeSpec, seed: u64) -> PathBuf {
    dir.join(format!(
        "{}-{}-seed{seed}-v{GENERATOR_VERSION}.gguf",
        spec.shape.name, spec.mix
    ))
}

/// The cached file for `spec` and `seed` in `dir`, written first if it is not there yet (or has
/// the wrong length, e.g. from a crash of an older pigpu).
pub fn cached(dir: &Path, spec: &ShapeSpec, seed: u64) -> Result<Written, ShapeError> {
    let path = cache_path(dir, spec, seed);
    let t0 = Instant::now();
    let plan = plan(spec, seed);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == plan.layout.file_len) {
        return Ok(written(spec, seed, &path, &plan, t0, false));
    }
    std::fs::create_dir_all(dir).map_err(|source| ShapeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write::write_file(&plan, seed, &path, 0).map_err(|source| ShapeError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(written(spec, seed, &path, &plan, t0, true))
}

#[cfg(test)]
mod tests;
