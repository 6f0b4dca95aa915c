//! `Tuning`: every knob of the Vulkan engine in one plain struct, resolved once at the command
//! layer (flags and environment) and handed down; nothing below `src/cmd/` reads the environment.
//! `Tuning::from_lookup` parses the documented `PIGPU_*` variables through a lookup closure, so
//! tests pass a map and the commands pass `|name| std::env::var(name).ok()`.

use std::fmt;
use std::path::PathBuf;

use crate::platform::vulkan::VulkanEnv;

/// The engine's knobs. `Tuning::default()` is "no knob set": automatic device choice (which
/// skips CPU implementations), device-chosen shapes, no validation, no pipeline cache on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Device to open, by index or by a substring of its name (`--device`, `PIGPU_DEVICE`);
    /// `None`: the automatic choice (discrete GPU first; never lavapipe nor the Pi's V3D).
    pub device: Option<String>,
    /// The Khronos validation layer (`PIGPU_VK_VALIDATION=1`; an error if it is not installed).
    /// Its errors are collected (tests assert there are none) and logged when `debug_echo`.
    pub validation: bool,
    /// Log every validation and driver message (`PIGPU_VK_DEBUG`, any value), warnings included.
    pub debug_echo: bool,
    /// Which kind of device the engine makes its choices for (`PIGPU_VK_AS=gpu|cpu`):
    /// `Some(true)`, every default as on a discrete GPU (kernels, shapes, batch, attention,
    /// sampler, readback, weight binding), on whatever device runs, so lavapipe runs the
    /// GPU's exact configuration; `Some(false)`, as on a CPU implementation; `None`: by the
    /// device's own kind. Limits (shared memory, subgroup and workgroup sizes) still come
    /// from the real device, and every other knob still wins over it (`choices.rs`).
    pub as_gpu: Option<bool>,
    /// Decode mat-vec shape `[workgroup size, rows per workgroup, path]` (`PIGPU_VK_MATVEC=WG,ROWS,PATH`;
    /// path 0: shared-memory tree, 1: whole rows per invocation, 2: subgroup kernel). Still
    /// fitted to the device's limits. `None`: by device kind.
    pub matvec: Option<[u32; 3]>,
    /// The same for the prompt mat-mat (`PIGPU_VK_MATMUL`; paths 0 and 1 only).
    pub matmul: Option<[u32; 3]>,
    /// Tokens per workgroup of the prompt mat-mat (`PIGPU_VK_MATMUL_NT`, 2 to 32); `None`: 8 on
    /// GPUs (batches of more go to the tiled mat-mat), 16 on CPU implementations.
    pub matmul_nt: Option<u32>,
    /// Prompt batches of more than the mat-mat's NT tokens on the tiled mat-mat (`Some(true)`,
    /// `PIGPU_VK_PROMPT=tiled`) or on the mat-mat (`Some(false)`, `=matvec`); `None`:
    /// tiled on GPUs, mat-vec on CPU implementations.
    pub prompt_tiled: Option<bool>,
    /// Force one tile shape of the prompt mat-mat, `"s"`, `"m"` or `"l"` (`PIGPU_VK_TILE`),
    /// where the device can run it; `None`: chosen per matrix and batch size.
    pub tile: Option<&'static str>,
    /// Which form of the tiled prompt mat-mat runs (`PIGPU_VK_TILED=scalar|vec4|vec4pf`);
    /// `None`: [`TiledKernel::Scalar`] (the others wait for a GPU sweep to measure them).
    pub tiled_kernel: Option<TiledKernel>,
    /// Tokens per prompt batch (`PIGPU_VK_UBATCH`); `None`: 512 on GPUs, 64 on CPU
    /// implementations. Capped by device memory either way.
    pub ubatch: Option<usize>,
    /// KV positions per workgroup of the split decode attention (`PIGPU_VK_ATTN_CHUNK`, a
    /// multiple of 64); `None`: chosen from the context length and the device.
    pub attn_chunk: Option<u32>,
    /// Splits of the prompt attention's KV range (`PIGPU_VK_PROMPT_SPLIT=N`, 1 to 32; 1: never
    /// split); `None`: split a short batch deep in the cache where the device splits decode
    /// attention (`Splits::prompt_split`).
    pub prompt_split: Option<u32>,
    /// The split decode attention's kernel: the staged one for GPUs (`Some(true)`,
    /// `PIGPU_VK_ATTN=staged`: K/V tiles in shared memory, subgroup reductions) or the one key
    /// per invocation "rows" kernel (`Some(false)`, `=rows`), for A/B runs; `None`: staged where
    /// the device has subgroup arithmetic and shuffles. Decoding on CPU implementations keeps
    /// the one-row kernel either way unless `attn_chunk` forces the split path.
    pub attn_staged: Option<bool>,
    /// Prompt batches off the tiled path: the lanes attention (`Some(true)`,
    /// `PIGPU_VK_PROMPT_ATTN=lanes`: one query row per invocation, a subgroup per workgroup) or
    /// the one-row kernel (`Some(false)`, `=row`: a workgroup per query head and token), for
    /// A/B runs; `None`: lanes on CPU implementations, the one-row kernel on GPUs (whose
    /// prompts take the tiled path's prompt attention anyway).
    pub prompt_attn_lanes: Option<bool>,
    /// RMSNorm as its own pass (`PIGPU_VK_NORM=pass`): one small dispatch per norm writes the
    /// normed rows once, and the QKV, gate/up and head products read them without their fused
    /// norm. `false` (`=fused`, the default): the norm is fused into those products' prologue.
    pub norm_pass: bool,
    /// Whether decoding folds RoPE and the KV write into the attention (`Some(true)`,
    /// `PIGPU_VK_ROPE=fold`: one dispatch rotates, writes the new K and V and attends; on the
    /// split attention its split pass does, the combine pass follows) or keeps them as the
    /// `rope_kv` dispatch (`Some(false)`, `=pass`), for A/B runs; `None`: folded into the
    /// one-row attention (CPU implementations: `attention_rope`), a pass before the split
    /// attention (GPUs: unmeasured until a GPU's knob sweep). Prompt batches keep `rope_kv`.
    pub rope_fold: Option<bool>,
    /// How the host gets each step's token and verdict: from the device state itself, mapped
    /// (`Some(true)`, `PIGPU_VK_READBACK=mapped`: the state buffer host-visible, no copy
    /// command), or copied into a readback buffer at the end of the step (`Some(false)`,
    /// `=copy`); `None`: mapped on CPU implementations (all their memory is host memory), the
    /// copy on GPUs (the state stays in device-local memory).
    pub state_mapped: Option<bool>,
    /// The sampler in two stages (`Some(true)`, `PIGPU_VK_SAMPLER=two`: a prefilter over
    /// 1024-token slices of the vocabulary, many workgroups, then the selection over their
    /// candidates) or in one (`Some(false)`, `=one`: one workgroup reads the whole vocabulary);
    /// `None`: two stages on GPUs, one on CPU implementations.
    pub sampler_two_stage: Option<bool>,
    /// How the `matvec.comp` mat-vecs (paths 0 and 1) read weights: through uniform texel
    /// buffers (`Some(true)`, `PIGPU_VK_WEIGHTS=texel`: gathers on lavapipe) or storage buffers
    /// (`Some(false)`, `=storage`); `None`: texel buffers on CPU implementations, storage
    /// buffers on GPUs (`Device::texel_weights`).
    pub texel_weights: Option<bool>,
    /// Directory of the on-disk pipeline cache (`$XDG_CACHE_HOME/pigpu`, else
    /// `$HOME/.cache/pigpu`); `None` (`PIGPU_NO_PIPELINE_CACHE` set, or neither variable):
    /// shaders are compiled on every start and nothing is written.
    pub pipeline_cache: Option<PathBuf>,
    /// Cap on the device memory the engine counts on, in bytes (`PIGPU_VK_MEM_LIMIT`, e.g.
    /// `512M`, `6G`; a plain number is MiB): the memory check before upload refuses a model
    /// that does not fit under it. For a GPU shared with other programs, and for tests.
    pub mem_limit: Option<u64>,
    /// The loader's `VK_DRIVER_FILES` / `VK_ICD_FILENAMES`, which the loader itself obeys; the
    /// engine uses them only to name why no driver loads (the "no device" error), probing the
    /// same manifests the loader tried. Not parsed by [`Tuning::from_lookup`]: the command layer
    /// sets it from `VulkanEnv::from_lookup`.
    pub vulkan_env: VulkanEnv,
    /// Test builds only (`--features testing`): after this many queue submits, every submit
    /// fails as a lost device (`PIGPU_TEST_VK_LOSE_DEVICE_AFTER=N`), to test recovery.
    #[cfg(feature = "testing")]
    pub lose_device_after: Option<u64>,
}

/// The forms of the tiled prompt mat-mat, for A/B runs on a GPU (docs/vulkan.md, "Prompt
/// processing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiledKernel {
    /// `shaders/matmul_tiled.comp`: one invocation decodes a whole 32-weight unit, scalar
    /// shared-memory reads in the k loop.
    Scalar,
    /// `shaders/matmul_tiled_vec4.comp`: 4 invocations share a unit, vec4 shared-memory reads.
    Vec4,
    /// The same with the next step's loads and decoding in registers during this step's
    /// products (spec constant `PF`).
    Vec4Prefetch,
}

impl TiledKernel {
    /// Every form, in the order of `PIGPU_VK_TILED`'s values.
    pub const ALL: [TiledKernel; 3] = [
        TiledKernel::Scalar,
        TiledKernel::Vec4,
        TiledKernel::Vec4Prefetch,
    ];

    /// The knob's value for this form.
    pub fn name(self) -> &'static str {
        match self {
            TiledKernel::Scalar => "scalar",
            TiledKernel::Vec4 => "vec4",
            TiledKernel::Vec4Prefetch => "vec4pf",
        }
    }
}

/// A knob's value that does not parse: names the variable, the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuningError {
    /// The environment variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What was expected, in words.
    pub expected: &'static str,
}

impl fmt::Display for TuningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}='{}': expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for TuningError {}

const SHAPE_EXPECTED: &str =
    "WG,ROWS,PATH (WG a power of two, ROWS 1..=16, PATH 0 tree, 1 lane, 2 subgroup), e.g. 128,2,2";

/// A knob with two values: `on.0` is true, `on.1` false; anything else names the variable and
/// what it takes (`expected`).
fn two_way(
    var: &'static str,
    v: String,
    on: (&str, &str),
    expected: &'static str,
) -> Result<bool, TuningError> {
    match v.trim() {
        s if s == on.0 => Ok(true),
        s if s == on.1 => Ok(false),
        _ => Err(TuningError {
            var,
            value: v,
            expected,
        }),
    }
}

fn shape(var: &'static str, v: &str, max_path: u32) -> Result<[u32; 3], TuningError> {
    let err = || TuningError {
        var,
        value: v.to_string(),
        expected: SHAPE_EXPECTED,
    };
    let p: Vec<u32> = v
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| err()))
        .collect::<Result<_, _>>()?;
    match p[..] {
        [wg, rows, path]
            if wg.is_power_of_two() && (1..=16).contains(&rows) && path <= max_path =>
        {
            Ok([wg, rows, path])
        }
        _ => Err(err()),
    }
}

/// `512M`, `6G`, `6GiB`, `300` (MiB) as bytes; `None` when malformed, zero or overflowing.
fn mem_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let shift = match v[digits..].trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 10,
        "" | "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift).filter(|&b| b > 0)
}

/// `PIGPU_VK_TILE`: one tile shape of the prompt mat-mat.
fn tile(v: String) -> Result<&'static str, TuningError> {
    match v.trim() {
        "s" => Ok("s"),
        "m" => Ok("m"),
        "l" => Ok("l"),
        _ => Err(TuningError {
            var: "PIGPU_VK_TILE",
            value: v,
            expected: "s, m or l",
        }),
    }
}

/// `PIGPU_VK_TILED`: a form of the tiled prompt mat-mat by its name.
fn tiled_kernel(v: String) -> Result<TiledKernel, TuningError> {
    TiledKernel::ALL
        .into_iter()
        .find(|k| k.name() == v.trim())
        .ok_or(TuningError {
            var: "PIGPU_VK_TILED",
            value: v,
            expected: "scalar, vec4 or vec4pf",
        })
}

/// A number for `var` that `ok` accepts; anything else is the error naming `var` and what
/// was `expected`.
fn number<T: std::str::FromStr>(
    var: &'static str,
    v: String,
    ok: impl Fn(&T) -> bool,
    expected: &'static str,
) -> Result<T, TuningError> {
    v.trim().parse::<T>().ok().filter(ok).ok_or(TuningError {
        var,
        value: v,
        expected,
    })
}

/// `PIGPU_VK_MEM_LIMIT`: a size in bytes ([`mem_size`]).
fn mem_limit(v: String) -> Result<u64, TuningError> {
    mem_size(&v).ok_or(TuningError {
        var: "PIGPU_VK_MEM_LIMIT",
        value: v,
        expected: "a size such as 512M or 6G (K, M, G, T: powers of 1024; a plain number is MiB), more than 0",
    })
}

/// The pipeline cache's directory: `pigpu` under `XDG_CACHE_HOME`, else under `HOME/.cache`.
fn pipeline_cache_dir(get: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    get("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("pigpu"))
}

impl Tuning {
    /// Parses the `PIGPU_*` variables through `get` (unset and empty values mean "not set").
    /// Every malformed value is an error naming the variable; nothing is silently ignored.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Tuning, TuningError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut t = Tuning {
            device: get("PIGPU_DEVICE"),
            debug_echo: get("PIGPU_VK_DEBUG").is_some(),
            ..Tuning::default()
        };
        if let Some(v) = get("PIGPU_VK_VALIDATION") {
            t.validation = two_way("PIGPU_VK_VALIDATION", v, ("1", "0"), "1 (on) or 0 (off)")?;
        }
        if let Some(v) = get("PIGPU_VK_AS") {
            t.as_gpu = Some(two_way("PIGPU_VK_AS", v, ("gpu", "cpu"), "gpu or cpu")?);
        }
        if let Some(v) = get("PIGPU_VK_MATVEC") {
            t.matvec = Some(shape("PIGPU_VK_MATVEC", &v, 2)?);
        }
        if let Some(v) = get("PIGPU_VK_MATMUL") {
            t.matmul = Some(shape("PIGPU_VK_MATMUL", &v, 1)?);
        }
        if let Some(v) = get("PIGPU_VK_MATMUL_NT") {
            let ok = |n: &u32| (2..=32).contains(n);
            let expected = "tokens per workgroup of the prompt mat-mat, 2 to 32";
            t.matmul_nt = Some(number("PIGPU_VK_MATMUL_NT", v, ok, expected)?);
        }
        if let Some(v) = get("PIGPU_VK_PROMPT") {
            t.prompt_tiled = Some(two_way(
                "PIGPU_VK_PROMPT",
                v,
                ("tiled", "matvec"),
                "tiled or matvec",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_TILE") {
            t.tile = Some(tile(v)?);
        }
        if let Some(v) = get("PIGPU_VK_TILED") {
            t.tiled_kernel = Some(tiled_kernel(v)?);
        }
        if let Some(v) = get("PIGPU_VK_UBATCH") {
            let ok = |&n: &usize| n >= 1;
            let expected = "a number of tokens, at least 1";
            t.ubatch = Some(number("PIGPU_VK_UBATCH", v, ok, expected)?);
        }
        if let Some(v) = get("PIGPU_VK_ATTN_CHUNK") {
            let ok = |&n: &u32| n >= 64 && n.is_multiple_of(64);
            let expected = "KV positions per workgroup, a multiple of 64";
            t.attn_chunk = Some(number("PIGPU_VK_ATTN_CHUNK", v, ok, expected)?);
        }
        if let Some(v) = get("PIGPU_VK_PROMPT_SPLIT") {
            let ok = |n: &u32| (1..=32).contains(n);
            let expected = "splits of the prompt attention's keys, 1 to 32";
            t.prompt_split = Some(number("PIGPU_VK_PROMPT_SPLIT", v, ok, expected)?);
        }
        if let Some(v) = get("PIGPU_VK_ATTN") {
            t.attn_staged = Some(two_way(
                "PIGPU_VK_ATTN",
                v,
                ("staged", "rows"),
                "staged or rows",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_PROMPT_ATTN") {
            t.prompt_attn_lanes = Some(two_way(
                "PIGPU_VK_PROMPT_ATTN",
                v,
                ("lanes", "row"),
                "lanes or row",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_NORM") {
            t.norm_pass = two_way("PIGPU_VK_NORM", v, ("pass", "fused"), "fused or pass")?;
        }
        if let Some(v) = get("PIGPU_VK_ROPE") {
            t.rope_fold = Some(two_way(
                "PIGPU_VK_ROPE",
                v,
                ("fold", "pass"),
                "fold or pass",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_READBACK") {
            t.state_mapped = Some(two_way(
                "PIGPU_VK_READBACK",
                v,
                ("mapped", "copy"),
                "mapped or copy",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_SAMPLER") {
            t.sampler_two_stage = Some(two_way(
                "PIGPU_VK_SAMPLER",
                v,
                ("two", "one"),
                "one or two (stages)",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_WEIGHTS") {
            t.texel_weights = Some(two_way(
                "PIGPU_VK_WEIGHTS",
                v,
                ("texel", "storage"),
                "texel or storage",
            )?);
        }
        if let Some(v) = get("PIGPU_VK_MEM_LIMIT") {
            t.mem_limit = Some(mem_limit(v)?);
        }
        if get("PIGPU_NO_PIPELINE_CACHE").is_none() {
            t.pipeline_cache = pipeline_cache_dir(&get);
        }
        #[cfg(feature = "testing")]
        if let Some(v) = get("PIGPU_TEST_VK_LOSE_DEVICE_AFTER") {
            t.lose_device_after = Some(v.trim().parse::<u64>().map_err(|_| TuningError {
                var: "PIGPU_TEST_VK_LOSE_DEVICE_AFTER",
                value: v,
                expected: "a number of queue submits",
            })?);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Tuning, TuningError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tuning::from_lookup(|n| m.get(n).cloned())
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(parse(&[]).unwrap(), Tuning::default());
        // Empty values count as unset (a shell's `PIGPU_DEVICE= pigpu ...`).
        assert_eq!(parse(&[("PIGPU_DEVICE", "")]).unwrap().device, None);
    }

    #[test]
    fn every_knob_parses() {
        let t = parse(&[
            ("PIGPU_DEVICE", "llvmpipe"),
            ("PIGPU_VK_VALIDATION", "1"),
            ("PIGPU_VK_DEBUG", "yes"),
            ("PIGPU_VK_AS", "gpu"),
            ("PIGPU_VK_MATVEC", "128, 2, 2"),
            ("PIGPU_VK_MATMUL", "32,8,1"),
            ("PIGPU_VK_MATMUL_NT", "12"),
            ("PIGPU_VK_PROMPT", "matvec"),
            ("PIGPU_VK_TILE", "m"),
            ("PIGPU_VK_TILED", "vec4pf"),
            ("PIGPU_VK_UBATCH", "70"),
            ("PIGPU_VK_ATTN_CHUNK", "256"),
            ("PIGPU_VK_PROMPT_SPLIT", "6"),
            ("PIGPU_VK_ATTN", "rows"),
            ("PIGPU_VK_PROMPT_ATTN", "row"),
            ("PIGPU_VK_MEM_LIMIT", "6G"),
            ("PIGPU_VK_NORM", "pass"),
            ("PIGPU_VK_ROPE", "pass"),
            ("PIGPU_VK_READBACK", "copy"),
            ("PIGPU_VK_SAMPLER", "one"),
            ("PIGPU_VK_WEIGHTS", "storage"),
            ("HOME", "/home/pi"),
        ])
        .unwrap();
        assert_eq!(t.device.as_deref(), Some("llvmpipe"));
        assert!(t.validation && t.debug_echo);
        assert_eq!(t.as_gpu, Some(true));
        assert_eq!(
            parse(&[("PIGPU_VK_AS", " cpu ")]).unwrap().as_gpu,
            Some(false)
        );
        assert_eq!(parse(&[]).unwrap().as_gpu, None);
        assert_eq!(t.matvec, Some([128, 2, 2]));
        assert_eq!(t.matmul, Some([32, 8, 1]));
        assert_eq!(t.matmul_nt, Some(12));
        for bad in ["1", "33", "x"] {
            let e = parse(&[("PIGPU_VK_MATMUL_NT", bad)]).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), ("PIGPU_VK_MATMUL_NT", bad));
        }
        assert_eq!(t.prompt_tiled, Some(false));
        assert_eq!(t.tile, Some("m"));
        assert_eq!(t.tiled_kernel, Some(TiledKernel::Vec4Prefetch));
        assert_eq!(t.ubatch, Some(70));
        assert_eq!(t.attn_chunk, Some(256));
        assert_eq!(t.prompt_split, Some(6));
        assert_eq!(parse(&[]).unwrap().prompt_split, None);
        assert_eq!(t.attn_staged, Some(false));
        let staged = parse(&[("PIGPU_VK_ATTN", " staged ")]).unwrap();
        assert_eq!(staged.attn_staged, Some(true));
        assert_eq!(t.prompt_attn_lanes, Some(false));
        let lanes = parse(&[("PIGPU_VK_PROMPT_ATTN", " lanes ")]).unwrap();
        assert_eq!(lanes.prompt_attn_lanes, Some(true));
        assert_eq!(parse(&[]).unwrap().prompt_attn_lanes, None);
        assert_eq!(t.mem_limit, Some(6 << 30));
        assert!(t.norm_pass);
        assert_eq!(t.rope_fold, Some(false));
        let fold = parse(&[("PIGPU_VK_ROPE", " fold ")]).unwrap();
        assert_eq!(fold.rope_fold, Some(true));
        assert_eq!(parse(&[]).unwrap().rope_fold, None);
        assert_eq!(t.state_mapped, Some(false));
        let mapped = parse(&[("PIGPU_VK_READBACK", "mapped")]).unwrap();
        assert_eq!(mapped.state_mapped, Some(true));
        assert_eq!(parse(&[]).unwrap().state_mapped, None);
        assert_eq!(t.sampler_two_stage, Some(false));
        assert_eq!(t.texel_weights, Some(false));
        let texel = parse(&[("PIGPU_VK_WEIGHTS", " texel ")]).unwrap();
        assert_eq!(texel.texel_weights, Some(true));
        assert_eq!(parse(&[]).unwrap().texel_weights, None);
        assert_eq!(
            t.pipeline_cache,
            Some(PathBuf::from("/home/pi/.cache/pigpu"))
        );
    }

    #[test]
    fn every_tiled_kernel_parses_by_its_name() {
        for k in TiledKernel::ALL {
            let t = parse(&[("PIGPU_VK_TILED", k.name())]).unwrap();
            assert_eq!(t.tiled_kernel, Some(k));
        }
        assert_eq!(parse(&[]).unwrap().tiled_kernel, None);
    }

    #[test]
    fn the_norm_is_fused_unless_a_pass_is_asked_for() {
        let pass = |v: &str| parse(&[("PIGPU_VK_NORM", v)]).unwrap().norm_pass;
        assert!(!parse(&[]).unwrap().norm_pass);
        assert!(!pass("fused"));
        assert!(pass(" pass "));
        assert!(!pass(""), "empty is unset");
    }

    #[test]
    fn the_sampler_path_is_the_devices_unless_one_is_asked_for() {
        let stages = |v: &str| parse(&[("PIGPU_VK_SAMPLER", v)]).unwrap().sampler_two_stage;
        assert_eq!(parse(&[]).unwrap().sampler_two_stage, None);
        assert_eq!(stages("one"), Some(false));
        assert_eq!(stages(" two "), Some(true));
        assert_eq!(stages(""), None, "empty is unset");
    }

    #[test]
    fn pipeline_cache_prefers_xdg_and_can_be_turned_off() {
        let t = parse(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]).unwrap();
        assert_eq!(t.pipeline_cache, Some(PathBuf::from("/x/pigpu")));
        let t = parse(&[("HOME", "/h"), ("PIGPU_NO_PIPELINE_CACHE", "1")]).unwrap();
        assert_eq!(t.pipeline_cache, None);
    }

    #[test]
    fn memory_limits_take_binary_units() {
        let cap = |v: &str| parse(&[("PIGPU_VK_MEM_LIMIT", v)]).unwrap().mem_limit;
        assert_eq!(cap("300"), Some(300 << 20));
        assert_eq!(cap("512M"), Some(512 << 20));
        assert_eq!(cap("2 GiB"), Some(2 << 30));
        assert_eq!(cap("64k"), Some(64 << 10));
    }

    /// With several values malformed, the error is the first variable's in this order, with the
    /// value as given and what was expected.
    #[test]
    fn the_first_malformed_variable_in_order_is_the_error() {
        let mut bad = vec![
            ("PIGPU_VK_VALIDATION", " yes", "1 (on) or 0 (off)"),
            ("PIGPU_VK_AS", "discrete", "gpu or cpu"),
            ("PIGPU_VK_MATVEC", "128,2", SHAPE_EXPECTED),
            ("PIGPU_VK_MATMUL", "32,8,2", SHAPE_EXPECTED),
            ("PIGPU_VK_PROMPT", "fast", "tiled or matvec"),
            ("PIGPU_VK_TILE", "xl ", "s, m or l"),
            ("PIGPU_VK_TILED", "vec8", "scalar, vec4 or vec4pf"),
            ("PIGPU_VK_UBATCH", "0", "a number of tokens, at least 1"),
            (
                "PIGPU_VK_ATTN_CHUNK",
                "100",
                "KV positions per workgroup, a multiple of 64",
            ),
            (
                "PIGPU_VK_PROMPT_SPLIT",
                "0",
                "splits of the prompt attention's keys, 1 to 32",
            ),
            ("PIGPU_VK_ATTN", "tiled", "staged or rows"),
            ("PIGPU_VK_PROMPT_ATTN", "rows", "lanes or row"),
            ("PIGPU_VK_NORM", "separate", "fused or pass"),
            ("PIGPU_VK_ROPE", "fused", "fold or pass"),
            ("PIGPU_VK_READBACK", "host", "mapped or copy"),
            ("PIGPU_VK_SAMPLER", "2", "one or two (stages)"),
            ("PIGPU_VK_WEIGHTS", "uniform", "texel or storage"),
            (
                "PIGPU_VK_MEM_LIMIT",
                "lots",
                "a size such as 512M or 6G (K, M, G, T: powers of 1024; a plain number is MiB), more than 0",
            ),
        ];
        while !bad.is_empty() {
            let vars: Vec<(&str, &str)> = bad.iter().map(|&(k, v, _)| (k, v)).collect();
            let e = parse(&vars).unwrap_err();
            let (var, value, expected) = bad.remove(0);
            assert_eq!(
                (e.var, e.value.as_str(), e.expected),
                (var, value, expected)
            );
        }
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (var, bad) in [
            ("PIGPU_VK_MATVEC", "128,2"),
            ("PIGPU_VK_MATVEC", "100,2,2"),
            ("PIGPU_VK_MATVEC", "128,2,x"),
            ("PIGPU_VK_MATMUL", "32,8,2"),
            ("PIGPU_VK_VALIDATION", "yes"),
            ("PIGPU_VK_AS", "nvidia"),
            ("PIGPU_VK_PROMPT", "fast"),
            ("PIGPU_VK_TILE", "xl"),
            ("PIGPU_VK_TILED", "vec8"),
            ("PIGPU_VK_UBATCH", "0"),
            ("PIGPU_VK_ATTN_CHUNK", "100"),
            ("PIGPU_VK_PROMPT_SPLIT", "33"),
            ("PIGPU_VK_ATTN", "tiled"),
            ("PIGPU_VK_PROMPT_ATTN", "tiled"),
            ("PIGPU_VK_MEM_LIMIT", "0"),
            ("PIGPU_VK_MEM_LIMIT", "lots"),
            ("PIGPU_VK_MEM_LIMIT", "5X"),
            ("PIGPU_VK_MEM_LIMIT", "99999999999999999999"),
            ("PIGPU_VK_NORM", "separate"),
            ("PIGPU_VK_ROPE", "fused"),
            ("PIGPU_VK_READBACK", "host"),
            ("PIGPU_VK_SAMPLER", "2"),
            ("PIGPU_VK_SAMPLER", "three"),
            ("PIGPU_VK_WEIGHTS", "uniform"),
        ] {
            let e = parse(&[(var, bad)]).unwrap_err();
            assert_eq!(e.var, var);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{var}='{bad}': expected ")),
                "{msg}"
            );
        }
    }
}
