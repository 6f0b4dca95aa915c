//! `pigpu bench`: the output lines up with llama-bench's, and the command runs on a real model.

use pigpu::bench::report::{markdown, BenchResult};

fn row(test: &str, avg: f64, sd: f64) -> BenchResult {
    BenchResult {
        build_commit: "933414c0b".into(),
        build_number: 7293,
        model_filename: "tinyllama-1.1b-1t-openorca.Q4_K_M.gguf".into(),
        model_type: "llama 1B Q4_K - Medium".into(),
        // 636.18 MiB and 1.10 B, as in the fixture.
        model_size: (636.18 * 1024.0 * 1024.0) as u64,
        model_n_params: 1_100_048_384,
        n_batch: 512,
        n_threads: 4,
        n_gpu_layers: 99,
        n_prompt: 0,
        n_gen: 0,
        n_depth: 0,
        test: test.into(),
        test_time: String::new(),
        avg_ns: 0,
        stddev_ns: 0,
        avg_ts: avg,
        stddev_ts: sd,
        samples_ns: vec![],
        samples_ts: vec![],
        backend: "Vulkan".into(),
        device: String::new(),
        driver: String::new(),
        unit: None,
        stats: None,
    }
}

#[test]
fn markdown_matches_a_real_llama_bench_table() {
    let fixture = std::fs::read_to_string(
        crate::util::root().join("tests/fixtures/bench/llama-bench-vulkan-rtx3060-cm5.txt"),
    )
    .unwrap();
    let table: Vec<&str> = fixture.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 6, "fixture table");
    let ours = markdown(&[
        row("pp512", 6744.18, 179.28),
        row("pp4096", 3981.80, 0.91),
        row("tg128", 279.05, 0.37),
        row("pp4096+tg128", 2416.39, 0.14),
    ]);
    let ours: Vec<&str> = ours.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(ours, table);
    let build = fixture.lines().find(|l| l.starts_with("build:")).unwrap();
    assert!(markdown(&[row("tg128", 1.0, 0.0)]).contains(build));
}
