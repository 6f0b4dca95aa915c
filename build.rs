//! Compiles the GLSL compute shaders in `shaders/` to SPIR-V with `glslc` and writes a Rust table
//! of them (`$OUT_DIR/shaders.rs`) that `src/engine/vulkan/shaders.rs` embeds with `include_bytes!`.
//!
//! Variants come from one table: each weight type the engine supports is a `-D WTYPE=<ggml id>`
//! variant of the mat-vec / mat-mat shaders, plus an `any` variant that switches on the type at
//! run time (for fused dispatches whose matrices have different types).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Weight types with a dequantization routine in `shaders/common/dequant.glsl`: (name, ggml id).
/// Keep in step with `WEIGHT_TYPES` in `src/engine/vulkan/shaders.rs`.
const WEIGHT_TYPES: &[(&str, u32)] = &[
    ("f32", 0),
    ("f16", 1),
    ("q4_0", 2),
    ("q4_1", 3),
    ("q5_0", 6),
    ("q5_1", 7),
    ("q8_0", 8),
    ("q2_k", 10),
    ("q3_k", 11),
    ("q4_k", 12),
    ("q5_k", 13),
    ("q6_k", 14),
];

/// Shaders compiled once, without variants.
const SINGLE: &[&str] = &[
    "embed",
    "rope_kv",
    "attention",
    "sample",
    "sample_pre",
    "empty",
    "attention_prompt",
    "attention_lanes",
    "attention_split",
    "attention_staged",
    "attention_combine",
    "qk_norm",
    "norm_add",
];

/// Shaders compiled once per set of defines: (output name, source file, defines). `rms_norm_sg`
/// is the norm pass's subgroup reduction (shaders/rms_norm.comp); `attention_rope` the one-row
/// decode attention with RoPE and the KV write folded in (shaders/attention.comp),
/// `attention_split_rope` / `attention_staged_rope` the split decode attention's (GPUs), and
/// `attention_lanes_texel` the lanes prompt attention reading K and V through texel buffers.
const DEFINED: &[(&str, &str, &[&str])] = &[
    ("rms_norm", "rms_norm.comp", &[]),
    ("rms_norm_sg", "rms_norm.comp", &["SUBGROUP"]),
    ("attention_rope", "attention.comp", &["ROPE"]),
    ("attention_split_rope", "attention_split.comp", &["ROPE"]),
    ("attention_staged_rope", "attention_staged.comp", &["ROPE"]),
    ("attention_lanes_texel", "attention_lanes.comp", &["TEXEL"]),
];

/// Mat-vec shapes: (variant prefix, source, tokens per workgroup, extra defines; 0 tokens: a
/// specialization constant, the mat-mat's NT, shaders/matvec.comp). `matvecsg` is
/// the subgroup decode mat-vec for GPUs (shaders/matvec_sg.comp); `matvect` reads the weights
/// through texel buffers (`TEXEL`: lavapipe's default, `PIGPU_VK_WEIGHTS`). The mat-mat
/// has no texel form: on lavapipe it was slower with texel reads (docs/vulkan.md).
const MATVEC: &[(&str, &str, u32, &[&str])] = &[
    ("matvec", "matvec.comp", 1, &[]),
    ("matmul", "matvec.comp", 0, &[]),
    ("matvecsg", "matvec_sg.comp", 1, &[]),
    ("matvect", "matvec.comp", 1, &["TEXEL"]),
];

/// Per-weight-type shaders besides the mat-vec: (variant prefix, source file). `tiledv` is the
/// prompt mat-mat's second form (vec4 shared reads, shared dequantization; `PIGPU_VK_TILED`).
const TYPED: &[(&str, &str)] = &[
    ("tiled", "matmul_tiled.comp"),
    ("tiledv", "matmul_tiled_vec4.comp"),
];

/// Mat-vec prefixes whose lane path also gets an `<prefix>_any_lane` variant: the `any`
/// variant's source and defines compiled without glslc's optimizer (`-O0`), for the lane path,
/// where specialization constants (LANE_T0..3) fix the segments' weight types
/// (`Kernels::matvec_shaped`). With `-O`, spirv-opt inlines every weight type's dequantization
/// at each call site (`matmul_any`: 445 KB of SPIR-V, against 101 KB at `-O0`), and lavapipe
/// turns all of it into NIR at every start, before the constants leave at most four types: its
/// pipeline creation took 1.6-1.7 CPU-s from the `-O` SPIR-V and 0.54-0.59 from the `-O0` one
/// (Qwen2.5-Coder-0.5B Q4_K_M's mixed Q5_0/Q8_0 QKV; docs/benchmarks.md, "Pipeline creation
/// per pipeline on lavapipe"). Other paths (GPUs) keep the `-O` `any` variant.
const LANE_ANY: &[&str] = &["matmul"];

/// One shader variant to compile: (output name, source file, defines, optimized: glslc `-O`
/// or `-O0`).
type Job = (String, String, Vec<String>, bool);

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let shaders = root.join("shaders");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-env-changed=GLSLC");

    let glslc = std::env::var("GLSLC").unwrap_or_else(|_| "glslc".to_string());
    check_glslc(&glslc);
    let jobs = jobs();
    compile_all(&glslc, &shaders, &out, &jobs);
    std::fs::write(out.join("shaders.rs"), table(&jobs)).unwrap();
}

/// Stops the build with how to install `glslc` when it does not run.
fn check_glslc(glslc: &str) {
    match Command::new(glslc).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "\n\npigpu's build needs `{glslc}` (the shaderc GLSL compiler) to compile its Vulkan \
             shaders.\nInstall it: `sudo apt-get install glslc` (Debian/Raspberry Pi OS), or run \
             scripts/install-deps.sh, or set GLSLC=/path/to/glslc.\n\n"
        ),
    }
}

/// Every variant from the tables: the single shaders, the defined ones, then per weight type
/// (and `any`) the mat-vec shapes and the typed shaders.
fn jobs() -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    for s in SINGLE {
        jobs.push((s.to_string(), format!("{s}.comp"), vec![], true));
    }
    for (name, src, defs) in DEFINED {
        let defs = defs.iter().map(|d| d.to_string()).collect();
        jobs.push((name.to_string(), src.to_string(), defs, true));
    }
    for (prefix, src, nt, extra) in MATVEC {
        let defs = |ty: Option<u32>| -> Vec<String> {
            let mut d: Vec<String> = (*nt > 0).then(|| format!("NT={nt}")).into_iter().collect();
            d.extend(ty.map(|id| format!("WTYPE={id}")));
            d.extend(extra.iter().map(|e| e.to_string()));
            d
        };
        for (name, id) in WEIGHT_TYPES {
            let defs = defs(Some(*id));
            jobs.push((format!("{prefix}_{name}"), src.to_string(), defs, true));
        }
        jobs.push((format!("{prefix}_any"), src.to_string(), defs(None), true));
        if LANE_ANY.contains(prefix) {
            let name = format!("{prefix}_any_lane");
            jobs.push((name, src.to_string(), defs(None), false));
        }
    }
    for (prefix, src) in TYPED {
        for (name, id) in WEIGHT_TYPES {
            jobs.push((
                format!("{prefix}_{name}"),
                src.to_string(),
                vec![format!("WTYPE={id}")],
                true,
            ));
        }
        jobs.push((format!("{prefix}_any"), src.to_string(), vec![], true));
    }
    jobs
}

/// Compiles `jobs` into `out`; glslc is single-threaded, so on a few threads.
fn compile_all(glslc: &str, shaders: &Path, out: &Path, jobs: &[Job]) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(jobs.len());
    let chunks: Vec<Vec<Job>> = (0..threads)
        .map(|t| jobs.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    std::thread::scope(|s| {
        for chunk in &chunks {
            s.spawn(move || {
                for (name, src, defs, optimized) in chunk {
                    compile(glslc, shaders, out, name, src, defs, *optimized);
                }
            });
        }
    });
}

/// The Rust table of `jobs`' SPIR-V: a constant per variant, a `<prefix>_for(id)` per weight-typed
/// shader, the weight type ids.
fn table(jobs: &[Job]) -> String {
    let mut table = String::from("// Generated by build.rs: SPIR-V of every shader variant.\n");
    for (name, _, _, _) in jobs {
        writeln!(
            table,
            "pub const {}: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.spv\"));",
            name.to_uppercase()
        )
        .unwrap();
    }
    let prefixes = MATVEC.iter().map(|m| m.0).chain(TYPED.iter().map(|t| t.0));
    for prefix in prefixes {
        writeln!(
            table,
            "/// `{prefix}` SPIR-V by ggml type id; `None` = use the `any` variant.\n\
             pub fn {prefix}_for(id: u32) -> Option<&'static [u8]> {{ match id {{"
        )
        .unwrap();
        for (name, id) in WEIGHT_TYPES {
            writeln!(
                table,
                "  {id} => Some({}_{}),",
                prefix.to_uppercase(),
                name.to_uppercase()
            )
            .unwrap();
        }
        writeln!(table, "  _ => None }} }}").unwrap();
    }
    writeln!(
        table,
        "pub const WEIGHT_TYPE_IDS: &[u32] = &[{}];",
        WEIGHT_TYPES
            .iter()
            .map(|(_, id)| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    table
}

fn compile(
    glslc: &str,
    dir: &Path,
    out: &Path,
    name: &str,
    src: &str,
    defines: &[String],
    optimized: bool,
) {
    let mut cmd = Command::new(glslc);
    cmd.arg("--target-env=vulkan1.1")
        .arg(if optimized { "-O" } else { "-O0" })
        .arg("-I")
        .arg(dir)
        .arg("-fshader-stage=compute");
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg(dir.join(src))
        .arg("-o")
        .arg(out.join(format!("{name}.spv")));
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {glslc}: {e}"));
    if !o.status.success() {
        panic!(
            "glslc failed on shaders/{src} ({name}, defines {defines:?}):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
