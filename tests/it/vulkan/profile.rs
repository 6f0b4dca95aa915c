//! `--profile` on lavapipe with SmolLM2: every op of the prompt and decode submits is timed by
//! real timestamp queries, grouped by label, and adds up to no more than the wall time; the timed
//! recording computes the same tokens as the normal one, and turning profiling off brings back
//! the untouched decode path (nothing recorded, no descriptor writes).

use super::*;

/// The engine's own report, with the validation layer on.
#[test]
fn smollm_profile_times_every_op() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let n_layer = model.config.n_layer as f64;
    let prompt = tokens(&model, PROMPTS[0]);
    let greedy = SamplingParams::greedy();
    let mut gpu = vulkan(&model, 64);
    gpu.set_profiling(true).expect("lavapipe has timestamps");
    gpu.prefill(&prompt).unwrap();
    let n_steps = 4;
    let profiled: Vec<u32> = (0..n_steps)
        .map(|_| gpu.step(&greedy, 0.0).unwrap())
        .collect();
    let p = gpu.take_profile().expect("profiling is on");
    eprint!("{}", p.text());

    assert!(p.calibration.copy_gbs > 0.0, "{:?}", p.calibration);
    assert!(p.calibration.stage_floor_us > 0.0, "{:?}", p.calibration);
    assert!(p.timestamps.valid_bits > 0 && p.timestamps.period_ns > 0.0);
    let phase = |name: &str| {
        p.phases
            .iter()
            .find(|ph| ph.phase == name)
            .unwrap_or_else(|| panic!("no {name} phase in {:?}", p.phases))
    };
    let op = |ph: &pigpu::engine::vulkan::PhaseReport, label: &str| {
        ph.ops
            .iter()
            .find(|o| o.label.starts_with(label))
            .unwrap_or_else(|| panic!("no op '{label}…' in {:?}", ph.ops))
            .clone()
    };

    // The first step only samples (untimed); the others each ran one full timed forward pass.
    let dec = phase("decode");
    assert_eq!(dec.tokens, n_steps as u64 - 1);
    assert_eq!(dec.submits, dec.tokens);
    assert_eq!(dec.untimed_commands, 0);
    // lavapipe decodes with RoPE and the KV write folded into the one-row attention, and reads
    // the token from the mapped state: no `rope_kv`, no separate `attention`, no copy.
    assert_eq!(op(dec, "attention_rope").per_token, n_layer);
    // Greedy steps: the one-stage selection compiled for greedy only.
    for label in ["embed", "sample_one_greedy"] {
        assert_eq!(op(dec, label).per_token, 1.0, "{label}");
    }
    assert!(
        !dec.ops
            .iter()
            .any(|o| ["rope_kv", "attention", "copy"].contains(&o.label.as_str())),
        "{:?}",
        dec.ops
    );
    // lavapipe's sampler is one stage: no prefilter, no selection after one; and greedy steps
    // never run the selection for every sampler (`sample_one`) or the top-k-bounded one.
    assert!(
        !dec.ops.iter().any(|o| [
            "sample_pre",
            "sample",
            "sample_greedy",
            "sample_one",
            "sample_one_topk"
        ]
        .contains(&o.label.as_str())),
        "{:?}",
        dec.ops
    );
    // SmolLM2: Q4_1 layers, a Q8_0 (tied) head. (Labels are matched by prefix: what is fused
    // in, the tags after the shape, may change with the kernels.)
    let qkv = op(dec, "matvec Q4_1 960x576");
    assert_eq!(qkv.per_token, n_layer);
    let head = op(dec, "matvec Q8_0 49152x576");
    assert_eq!(head.per_token, 1.0);
    assert!(head.weight_gbs.unwrap() > 0.0 && head.gflops.is_none());
    let mut sum = 0.0;
    for o in &dec.ops {
        assert!(o.mean_us > 0.0, "{} took no time", o.label);
        // The shortest run is a run: above zero, at most the mean.
        assert!(
            o.min_us > 0.0 && o.min_us <= o.mean_us * (1.0 + 1e-9),
            "{}: min {} µs, mean {} µs",
            o.label,
            o.min_us,
            o.mean_us
        );
        assert!((o.us_per_token - o.per_token * o.mean_us).abs() <= 1e-6 * o.us_per_token);
        sum += o.us_per_token;
    }
    assert!((sum - dec.gpu_us_per_token).abs() <= 1e-6 * sum);
    let per_token: f64 = dec.ops.iter().map(|o| o.per_token).sum();
    assert!((dec.commands_per_token - per_token).abs() < 1e-9);
    // embed, 5 per layer, head, the sampler (more per layer if kernels split ops).
    assert!(
        dec.commands_per_token >= 5.0 * n_layer + 3.0,
        "{}",
        dec.commands_per_token
    );
    let shares: f64 = dec.ops.iter().map(|o| o.share).sum();
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");
    assert!(
        dec.gpu_us_per_token <= dec.wall_us_per_token,
        "ops {} µs > wall {} µs per token",
        dec.gpu_us_per_token,
        dec.wall_us_per_token
    );

    // The prompt: one batch, mat-mat variants with GFLOP/s; the head runs for the last token.
    let pr = phase("prompt");
    assert_eq!(pr.tokens, prompt.len() as u64);
    assert_eq!(pr.submits, 1);
    let mm = op(pr, "matmul Q4_1 3072x576");
    assert_eq!(mm.count, model.config.n_layer as u64);
    assert!(mm.gflops.unwrap() > 0.0 && mm.weight_gbs.unwrap() > 0.0);
    assert_eq!(op(pr, "matvec Q8_0 49152x576").count, 1);
    // Prompt batches keep RoPE and the KV write as a pass of their own.
    assert_eq!(op(pr, "rope_kv").count, model.config.n_layer as u64);
    assert!(pr.gpu_us_per_token <= pr.wall_us_per_token);

    // The report is taken: the sums start again.
    let again = gpu.take_profile().unwrap();
    assert!(again.phases.is_empty());

    // Off again: the normal recording, with the same tokens and the untouched counters.
    gpu.set_profiling(false).unwrap();
    assert!(gpu.take_profile().is_none());
    gpu.reset();
    gpu.prefill(&prompt).unwrap();
    gpu.step(&greedy, 0.0).unwrap();
    gpu.reset_stats();
    let mut plain = vec![profiled[0]];
    for _ in 1..n_steps {
        plain.push(gpu.step(&greedy, 0.0).unwrap());
    }
    assert_eq!(plain, profiled, "the timed recording computes other tokens");
    let s = gpu.stats();
    assert_eq!(s.command_buffers_recorded, 0);
    assert_eq!(s.descriptor_updates, 0);
    assert_eq!(s.submits, n_steps as u64 - 1);
    // Every dispatch of the normal recording was timed (and no copy recorded).
    assert_eq!(
        dec.commands_per_token,
        (s.dispatches / s.submits) as f64,
        "{dec:?}"
    );
    assert!(s.readback_bytes <= 16 * s.tokens);
    no_validation_errors(&gpu);
}

/// `pigpu run --profile`: the table on stderr and the `profile` object in --json; the CPU
/// engine refuses the flag with a message that says what to use.
#[test]
fn run_profile_flag_text_and_json() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let path = path.to_str().unwrap();
    let common = [
        path,
        "-p",
        "Hi",
        "-n",
        "2",
        "--temp",
        "0",
        "--ctx",
        "32",
        "--profile",
    ];
    let mut args = common.to_vec();
    args.extend(["--backend", "vulkan", "--device", "llvmpipe", "--json"]);
    let o = util::run(&["run"].into_iter().chain(args).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("profile: decode:"), "{err}");
    assert!(err.contains("stage floor"), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let prof = &j["profile"];
    assert!(
        prof["calibration"]["copy_gbs"].as_f64().unwrap() > 0.0,
        "{j}"
    );
    let phases = prof["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, ["decode", "prompt"], "{j}");
    for ph in phases {
        let ops = ph["ops"].as_array().unwrap();
        // Decoding on lavapipe: RoPE folded into the attention (`attention_rope`).
        let attn =
            |o: &serde_json::Value| o["label"] == "attention" || o["label"] == "attention_rope";
        assert!(ops.iter().any(attn), "{ph}");
        for o in ops {
            assert!(o["mean_us"].as_f64().unwrap() > 0.0, "{o}");
            assert!(o["min_us"].as_f64().unwrap() > 0.0, "{o}");
            assert!(o["count"].as_u64().unwrap() > 0, "{o}");
        }
        assert!(ph["gpu_us_per_token"].as_f64() <= ph["wall_us_per_token"].as_f64());
    }

    let mut args = common.to_vec();
    args.extend(["--backend", "cpu"]);
    let o = util::run(&["run"].into_iter().chain(args).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("--profile") && err.contains("--backend vulkan"),
        "{err}"
    );
}

/// `pigpu bench --profile -o json`: each test's row carries its own phase, without the warm-up
/// repetition (tg4 from no prompt: 1 prefill, 1 sample-only step, then 2 timed decode steps).
#[test]
fn bench_profile_rows_exclude_the_warm_up() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let o = util::run(&[
        "bench",
        "-m",
        path.to_str().unwrap(),
        "--backend",
        "vulkan",
        "--device",
        "llvmpipe",
        "-p",
        "4",
        "-n",
        "4",
        "-r",
        "1",
        "--no-extra",
        "--profile",
        "-o",
        "json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("profile: prompt:") && err.contains("profile: decode:"),
        "{err}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON rows");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let phase = |row: &serde_json::Value, name: &str| {
        row["profile"]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} phase in {row}"))
    };
    assert_eq!(rows[0]["test"], "pp4");
    let pp = phase(&rows[0], "prompt");
    assert_eq!(pp["tokens"], 4, "{pp}");
    assert_eq!(rows[1]["test"], "tg4");
    let tg = phase(&rows[1], "decode");
    assert_eq!(tg["tokens"], 2, "{tg}");
    assert!(tg["ops"].as_array().unwrap().len() >= 6, "{tg}");
}

/// `PIGPU_VK_NORM=pass` (read by the command layer): the profile shows the norm pass as an op of
/// its own, `rms_norm`, once per norm (two a layer and the head's, in decoding and in the
/// prompt's one batch), and no product with its norm fused in: the labels by which the next GPU
/// run's profile answers whether the pass pays (docs/vulkan.md, "RMSNorm once per token").
#[test]
fn run_profile_shows_the_norm_pass() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let n_norms = 2 * Model::load(&path).unwrap().config.n_layer as u64 + 1;
    let o = util::pigpu()
        .args(["run", path.to_str().unwrap(), "-p", "Hi", "-n", "3"])
        .args(["--temp", "0", "--ctx", "32", "--profile", "--json"])
        .args(["--backend", "vulkan", "--device", "llvmpipe"])
        .env("PIGPU_VK_NORM", "pass")
        .output()
        .expect("spawn pigpu");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let phases = j["profile"]["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{j}");
    for ph in phases {
        let ops = ph["ops"].as_array().unwrap();
        let norm = ops
            .iter()
            .find(|o| o["label"] == "rms_norm")
            .unwrap_or_else(|| panic!("no rms_norm op in {ph}"));
        let per_batch =
            norm["count"].as_u64().unwrap() as f64 / ph["submits"].as_u64().unwrap() as f64;
        assert_eq!(per_batch, n_norms as f64, "{ph}");
        for o in ops {
            let label = o["label"].as_str().unwrap();
            assert!(
                !label.split(' ').any(|w| w == "norm"),
                "{label}: a fused norm beside the pass"
            );
        }
    }
}

/// `PIGPU_VK_SAMPLER=two` (read by the command layer): lavapipe then samples in two stages, as
/// GPUs do by default; the profile shows the prefilter `sample_pre` and the greedy selection
/// `sample_greedy` (`--temp 0`) once per decoded token and no one-stage `sample_one`.
#[test]
fn run_profile_shows_the_two_stage_sampler() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let o = util::pigpu()
        .args(["run", path.to_str().unwrap(), "-p", "Hi", "-n", "3"])
        .args(["--temp", "0", "--ctx", "32", "--profile", "--json"])
        .args(["--backend", "vulkan", "--device", "llvmpipe"])
        .env("PIGPU_VK_SAMPLER", "two")
        .output()
        .expect("spawn pigpu");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let dec = j["profile"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "decode")
        .unwrap_or_else(|| panic!("no decode phase in {j}"));
    let ops = dec["ops"].as_array().unwrap();
    let per_token = |label: &str| {
        ops.iter()
            .find(|o| o["label"] == label)
            .map(|o| o["per_token"].as_f64().unwrap())
    };
    assert_eq!(per_token("sample_pre"), Some(1.0), "{dec}");
    // `--temp 0`: the selection compiled for greedy decoding only.
    assert_eq!(per_token("sample_greedy"), Some(1.0), "{dec}");
    for other in ["sample", "sample_topk", "sample_one", "sample_one_greedy"] {
        assert_eq!(per_token(other), None, "{other}: {dec}");
    }
}
