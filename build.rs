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
    "advance",
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

/// One shader variant to compile: (output name, source file, defines).
type Job = (String, String, Vec<String>);

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
        jobs.push((s.to_string(), format!("{s}.comp"), vec![]));
    }
    for (name, src, defs) in DEFINED {
        let defs = defs.iter().map(|d| d.to_string()).collect();
        jobs.push((name.to_string(), src.to_string(), defs));
    }
    for (prefix, src, nt, extra) in MATVEC {
        let defs = |ty: Option<u32>| -> Vec<String> {
            let mut d: Vec<String> = (*nt > 0).then(|| format!("NT={nt}")).into_iter().collect();
            d.extend(ty.map(|id| format!("WTYPE={id}")));
            d.extend(extra.iter().map(|e| e.to_string()));
            d
        };
        for (name, id) in WEIGHT_TYPES {
            jobs.push((format!("{prefix}_{name}"), src.to_string(), defs(Some(*id))));
        }
        jobs.push((format!("{prefix}_any"), src.to_string(), defs(None)));
    }
    for (prefix, src) in TYPED {
        for (name, id) in WEIGHT_TYPES {
            jobs.push((
                format!("{prefix}_{name}"),
                src.to_string(),
                vec![format!("WTYPE={id}")],
            ));
        }
        jobs.push((format!("{prefix}_any"), src.to_string(), vec![]));
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
                for (name, src, defs) in chunk {
                    compile(glslc, shaders, out, name, src, defs);
                }
            });
        }
    });
}

/// The Rust table of `jobs`' SPIR-V: a constant per variant, a `<prefix>_for(id)` per weight-typed
/// shader, the weight type ids.
fn table(jobs: &[Job]) -> String {
    let mut table = String::from("// Generated by build.rs: SPIR-V of every shader variant.\n");
    for (name, _, _) in jobs {
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

fn compile(glslc: &str, dir: &Path, out: &Path, name: &str, src: &str, defines: &[String]) {
    let mut cmd = Command::new(glslc);
    cmd.arg("--target-env=vulkan1.1")
        .arg("-O")
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
