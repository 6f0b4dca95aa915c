//! Rendering bench results the way llama-bench does, so pigpu's figures drop straight into the
//! tables Pi + GPU users publish: the markdown table (same columns, widths and alignment), and
//! JSON / JSONL / CSV with llama-bench's field names plus pigpu's own (CSV: llama-bench's 42
//! columns in its order on every row, then pigpu's).

use std::fmt::Write as _;

use serde::Serialize;

/// One finished test (a row of the table).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The git commit pigpu was built from (`unknown` when the build had none).
    pub build_commit: String,
    /// llama-bench's build number; always 0 for pigpu.
    pub build_number: u32,
    /// The model file's name.
    pub model_filename: String,
    /// `<arch> <size> <ftype>`, e.g. `llama 135M Q4_1`.
    pub model_type: String,
    /// Bytes of tensor data.
    pub model_size: u64,
    /// Parameters in the model (elements of all its tensors).
    pub model_n_params: u64,
    /// Prompt tokens fed per engine call (`-b`).
    pub n_batch: usize,
    /// CPU threads the engine ran with.
    pub n_threads: usize,
    /// llama-bench's GPU layers: 99 on the Vulkan engine (every layer), 0 on the CPU.
    pub n_gpu_layers: u32,
    /// Prompt tokens of the test.
    pub n_prompt: usize,
    /// Generated tokens of the test.
    pub n_gen: usize,
    /// Context tokens filled before the test.
    pub n_depth: usize,
    /// The row's name in pigpu's own vocabulary: `pp512`, `tg128`, `pp512+tg128`, `load`,
    /// `upload`, `e2e128` (with ` @ dN` for a depth).
    pub test: String,
    /// RFC 3339 time the test started.
    pub test_time: String,
    /// Mean time per repetition, in nanoseconds.
    pub avg_ns: u64,
    /// Sample standard deviation of the times, in nanoseconds.
    pub stddev_ns: u64,
    /// Mean rate over the repetitions, in tokens/s (or `unit`).
    pub avg_ts: f64,
    /// Sample standard deviation of the rates.
    pub stddev_ts: f64,
    /// Each repetition's time, in nanoseconds.
    pub samples_ns: Vec<u64>,
    /// Each repetition's rate, in tokens/s (or `unit`).
    pub samples_ts: Vec<f64>,
    /// pigpu: `CPU` or `Vulkan`.
    pub backend: String,
    /// pigpu: what ran (`cpu (avx2, 2 threads)`, `NVIDIA RTX A4000`).
    pub device: String,
    /// pigpu: the Vulkan driver (name, version, API version), or `pigpu <version>` for the
    /// CPU engine (whose kernel set is in `device`).
    pub driver: String,
    /// pigpu: the unit of `avg_ts` when it is not tokens/s (`MB/s` for load, `GB/s` for upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// pigpu: engine counters averaged per generated token (generation tests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsPerToken>,
    /// pigpu `--profile`: GPU time per op kind over the test (warm-up included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::engine::vulkan::Profile>,
}

/// Engine counters per generated token (defined with the counters, in `engine`).
pub use crate::engine::StatsPerToken;

/// `-o`: the output formats, as llama-bench's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// llama-bench's markdown table (`-o md`, the default).
    Md,
    /// One JSON array of results (`-o json`).
    Json,
    /// One JSON object per line, printed as each test finishes (`-o jsonl`).
    Jsonl,
    /// CSV with llama-bench's columns first (`-o csv`).
    Csv,
}

impl Format {
    /// The formats by their `-o` names.
    pub const NAMES: [&'static str; 4] = ["md", "json", "jsonl", "csv"];

    /// The format named `name` (one of [`Format::NAMES`]).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "md" => Format::Md,
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            _ => return None,
        })
    }
}

/// All rows in `format`, as printed on stdout.
pub fn render(results: &[BenchResult], format: Format) -> String {
    match format {
        Format::Md => markdown(results),
        Format::Json => json(results) + "\n",
        Format::Jsonl => jsonl(results),
        Format::Csv => csv(results),
    }
}

/// The progress line for a finished row (`pp64: 96.81 ± 1.16 t/s`); says so when Ctrl-C cut
/// its `reps` repetitions short.
pub fn progress_line(row: &BenchResult, reps: usize) -> String {
    let unit = row.unit.as_deref().unwrap_or("t/s");
    let n = row.samples_ns.len();
    let note = if n < reps {
        format!(" ({n} of {reps} repetitions)")
    } else {
        String::new()
    };
    format!(
        "{}: {:.2} ± {:.2} {unit}{note}",
        row.test, row.avg_ts, row.stddev_ts
    )
}

/// Mean and sample standard deviation (n − 1), 0 for fewer than two samples.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `636.18 MiB` / `1.87 GiB`, as llama-bench prints model sizes.
fn format_size(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let b = bytes as f64;
    if b < GIB {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / GIB)
    }
}

/// `134.52 M` / `1.10 B`, as llama-bench prints parameter counts.
fn format_params(n: u64) -> String {
    let n = n as f64;
    if n < 1e9 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} B", n / 1e9)
    }
}

/// A column: header, width (negative = left-aligned), as llama-bench lays them out.
fn columns(cpu: bool) -> [(&'static str, i32); 7] {
    [
        ("model", -30),
        ("size", 10),
        ("params", 10),
        ("backend", -10),
        if cpu { ("threads", 7) } else { ("ngl", 3) },
        ("test", 15),
        ("t/s", 20),
    ]
}

fn cell(out: &mut String, text: &str, width: i32) {
    let w = width.unsigned_abs() as usize;
    if width < 0 {
        let _ = write!(out, " {text:<w$} |");
    } else {
        let _ = write!(out, " {text:>w$} |");
    }
}

/// The markdown table and the `build:` line. The fourth column is `threads` when every row
/// ran on the CPU and `ngl` otherwise, as llama-bench chooses.
pub fn markdown(results: &[BenchResult]) -> String {
    let cpu = results.iter().all(|r| r.backend == "CPU");
    let cols = columns(cpu);
    let mut out = String::from("|");
    for (name, w) in cols {
        cell(&mut out, name, w);
    }
    out.push_str("\n|");
    for (_, w) in cols {
        let n = w.unsigned_abs() as usize;
        let dashes = if w < 0 {
            "-".repeat(n)
        } else {
            format!("{}:", "-".repeat(n - 1))
        };
        let _ = write!(out, " {dashes} |");
    }
    out.push('\n');
    for r in results {
        out.push('|');
        let ts = match &r.unit {
            None => format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts),
            Some(u) => format!("{:.2} ± {:.2} {u}", r.avg_ts, r.stddev_ts),
        };
        let fourth = if cpu {
            r.n_threads.to_string()
        } else {
            r.n_gpu_layers.to_string()
        };
        let values = [
            r.model_type.clone(),
            format_size(r.model_size),
            format_params(r.model_n_params),
            r.backend.clone(),
            fourth,
            r.test.clone(),
            ts,
        ];
        for ((_, w), v) in cols.iter().zip(values) {
            cell(&mut out, &v, *w);
        }
        out.push('\n');
    }
    if let Some(r) = results.first() {
        let _ = writeln!(out, "\nbuild: {} ({})", r.build_commit, r.build_number);
    }
    out
}

/// A JSON array of result objects, as `llama-bench -o json`.
pub fn json(results: &[BenchResult]) -> String {
    serde_json::to_string_pretty(results).expect("results serialise")
}

/// One JSON object per line, as `llama-bench -o jsonl`.
pub fn jsonl(results: &[BenchResult]) -> String {
    results
        .iter()
        .map(|r| serde_json::to_string(r).expect("result serialises") + "\n")
        .collect()
}

/// llama-bench's CSV columns (`llama-bench -o csv`, llama.cpp as vendored in llama-cpp-python
/// 0.3.36), in its order. pigpu writes every one of them on every row, then its own columns
/// ([`PIGPU_CSV_COLUMNS`]), so a CSV reader keyed on llama-bench's header reads pigpu's rows.
pub const LLAMA_BENCH_CSV_COLUMNS: [&str; 42] = [
    "build_commit",
    "build_number",
    "cpu_info",
    "gpu_info",
    "backends",
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "cpu_mask",
    "cpu_strict",
    "poll",
    "type_k",
    "type_v",
    "n_gpu_layers",
    "n_cpu_moe",
    "split_mode",
    "main_gpu",
    "no_kv_offload",
    "flash_attn",
    "devices",
    "tensor_split",
    "tensor_buft_overrides",
    "load_mode",
    "lazy_mode",
    "embeddings",
    "no_op_offload",
    "no_host",
    "repack",
    "fit_target",
    "fit_min_ctx",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
];

/// pigpu's columns after llama-bench's: the row name, what ran, the unit of `avg_ts` when it
/// is not tokens/s, the samples (space-separated), the per-token engine counters (empty on rows
/// without them) and the `--profile` report as JSON text (empty without `--profile`).
const PIGPU_CSV_COLUMNS: [&str; 14] = [
    "test",
    "device",
    "driver",
    "unit",
    "samples_ns",
    "samples_ts",
    "stats_dispatches",
    "stats_submits",
    "stats_command_buffers_recorded",
    "stats_descriptor_updates",
    "stats_readback_bytes",
    "stats_upload_bytes",
    "stats_host_us",
    "profile",
];

/// The CPU's model name from `/proc/cpuinfo` (llama-bench's `cpu_info`), or empty.
fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// One row's values, in the order of [`LLAMA_BENCH_CSV_COLUMNS`] then [`PIGPU_CSV_COLUMNS`].
/// Settings pigpu has are written with llama-bench's spelling; settings it has no counterpart
/// for are written as what pigpu does (one device, no split, no overrides, memory-mapped).
fn csv_values(r: &BenchResult, cpu: &str) -> Vec<String> {
    let gpu = r.backend != "CPU";
    let list = |xs: Vec<String>| xs.join(" ");
    let stat = |f: fn(&StatsPerToken) -> f64| {
        r.stats
            .as_ref()
            .map(|s| format!("{:.6}", f(s)))
            .unwrap_or_default()
    };
    vec![
        r.build_commit.clone(),
        r.build_number.to_string(),
        cpu.to_string(),
        if gpu { r.device.clone() } else { String::new() },
        r.backend.clone(),
        r.model_filename.clone(),
        r.model_type.clone(),
        r.model_size.to_string(),
        r.model_n_params.to_string(),
        r.n_batch.to_string(),
        // pigpu has no separate micro-batch: the batch is the micro-batch.
        r.n_batch.to_string(),
        r.n_threads.to_string(),
        "0x0".into(),
        "0".into(),
        "0".into(),
        "f16".into(),
        "f16".into(),
        r.n_gpu_layers.to_string(),
        "0".into(),
        "none".into(),
        "0".into(),
        "0".into(),
        // pigpu's attention is one kernel family with no flash-attention switch.
        "0".into(),
        if gpu { r.device.clone() } else { "none".into() },
        "0.00".into(),
        "none".into(),
        "mmap".into(),
        "off".into(),
        "0".into(),
        "0".into(),
        "0".into(),
        "0".into(),
        "0".into(),
        "0".into(),
        r.n_prompt.to_string(),
        r.n_gen.to_string(),
        r.n_depth.to_string(),
        r.test_time.clone(),
        r.avg_ns.to_string(),
        r.stddev_ns.to_string(),
        format!("{:.6}", r.avg_ts),
        format!("{:.6}", r.stddev_ts),
        // pigpu's own columns.
        r.test.clone(),
        r.device.clone(),
        r.driver.clone(),
        r.unit.clone().unwrap_or_default(),
        list(r.samples_ns.iter().map(|x| x.to_string()).collect()),
        list(r.samples_ts.iter().map(|x| format!("{x:.6}")).collect()),
        stat(|s| s.dispatches),
        stat(|s| s.submits),
        stat(|s| s.command_buffers_recorded),
        stat(|s| s.descriptor_updates),
        stat(|s| s.readback_bytes),
        stat(|s| s.upload_bytes),
        stat(|s| s.host_us),
        r.profile
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("profile serialises"))
            .unwrap_or_default(),
    ]
}

/// CSV as `llama-bench -o csv` writes it: a header row, then one row per result, every cell
/// quoted (`"` doubled inside). Every row has every column, whatever the test.
pub fn csv(results: &[BenchResult]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = LLAMA_BENCH_CSV_COLUMNS
        .iter()
        .chain(PIGPU_CSV_COLUMNS.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let cpu = if results.is_empty() {
        String::new()
    } else {
        cpu_info()
    };
    for r in results {
        let cells: Vec<String> = csv_values(r, &cpu).iter().map(|v| quote(v)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_params_like_llama_bench() {
        assert_eq!(format_size(667_080_000), "636.18 MiB");
        assert_eq!(format_size(2_008_000_000), "1.87 GiB");
        assert_eq!(format_params(1_100_048_384), "1.10 B");
        assert_eq!(format_params(134_515_008), "134.52 M");
    }

    #[test]
    fn every_value_has_a_column() {
        let r = BenchResult {
            build_commit: "abc".into(),
            build_number: 1,
            model_filename: "m.gguf".into(),
            model_type: "llama 135M Q4_1".into(),
            model_size: 1,
            model_n_params: 1,
            n_batch: 512,
            n_threads: 2,
            n_gpu_layers: 0,
            n_prompt: 0,
            n_gen: 4,
            n_depth: 0,
            test: "tg4".into(),
            test_time: String::new(),
            avg_ns: 1,
            stddev_ns: 0,
            avg_ts: 1.0,
            stddev_ts: 0.0,
            samples_ns: vec![1],
            samples_ts: vec![1.0],
            backend: "CPU".into(),
            device: "cpu".into(),
            driver: String::new(),
            unit: None,
            stats: None,
            profile: None,
        };
        let n = LLAMA_BENCH_CSV_COLUMNS.len() + PIGPU_CSV_COLUMNS.len();
        assert_eq!(csv_values(&r, "cpu").len(), n);
        let text = csv(&[r]);
        let header = text.lines().next().unwrap();
        assert_eq!(header.split(',').count(), n);
    }

    #[test]
    fn sample_standard_deviation() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((sd - 1.2909944).abs() < 1e-6);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }
}
