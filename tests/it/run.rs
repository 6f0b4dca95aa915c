//! `pigpu run` and `pigpu perplexity` end to end on the small real model: output goes where it
//! should, seeds reproduce, chat works from stdin, and every kind of bad input is a clear error
//! with exit code 2 and no panic.

use crate::util::{run, run_with_stdin, test_model, SMOLLM};
use pigpu::gguf::{GgufWriter, Value};
use pigpu::quant::GgmlType;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2, no panic, and a message containing `needle`.
fn assert_fails(args: &[&str], needle: &str) {
    let o = run(args);
    let e = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should exit 2; stderr: {e}"
    );
    assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    assert!(e.contains(needle), "{args:?}: expected {needle:?} in: {e}");
}

#[test]
fn greedy_completion_streams_only_text_and_json_has_ids_and_timings() {
    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    let base = [
        "run",
        m,
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        "--backend",
        "cpu",
    ];
    let o = run(&base);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(text.contains("Paris"), "stdout: {text:?}");
    assert!(!text.contains("pigpu:"), "logs leaked to stdout: {text:?}");
    assert!(stderr(&o).contains("t/s"), "timings go to stderr");

    let mut args = base.to_vec();
    args.push("--json");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(j["prompt_tokens"], 5);
    let toks = j["tokens"].as_array().unwrap();
    assert_eq!(toks.len(), 8);
    assert!(j["text"].as_str().unwrap().contains("Paris"));
    assert!(j["timings"]["gen_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(j["timings"]["load_ms"].as_f64().unwrap() > 0.0);
    // The JSON's text is the streamed text (greedy: the same run).
    assert_eq!(j["text"].as_str().unwrap().trim_end(), text.trim_end());

    // --echo prints the prompt first.
    let mut args = base.to_vec();
    args.push("--echo");
    let o = run(&args);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("The capital of France is"));
}

#[test]
fn same_seed_same_text_when_sampling() {
    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    let go = |seed: &str| {
        let o = run(&[
            "run",
            m,
            "-p",
            "Once upon a time",
            "-n",
            "12",
            "--temp",
            "1.0",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
            "--seed",
            seed,
            "--backend",
            "cpu",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j["tokens"].clone()
    };
    assert_eq!(go("1234"), go("1234"));
}

#[test]
fn chat_reads_turns_from_stdin_and_stops_at_end_of_turn() {
    let Some(m) = test_model(SMOLLM) else { return };
    let o = run_with_stdin(
        &[
            "run",
            m.to_str().unwrap(),
            "--chat",
            "--temp",
            "0",
            "-n",
            "64",
            "--backend",
            "cpu",
            "--json",
        ],
        b"What is the capital of France?\nAnd of Germany?\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let turns: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per turn"))
        .collect();
    assert_eq!(turns.len(), 2);
    for t in &turns {
        assert!(!t["text"].as_str().unwrap().is_empty(), "{turns:?}");
        // A 135M model's greedy answer may ramble; it ends at the end-of-turn token or -n.
        let stop = t["stop"].as_str().unwrap();
        assert!(stop == "end_of_text" || stop == "length", "{turns:?}");
    }
    // The second turn reuses the first turn's KV cache: only the new message is prefilled.
    let first_prompt = turns[0]["prompt_tokens"].as_u64().unwrap() as usize;
    let second_fed = turns[1]["prompt_ids"].as_array().unwrap().len();
    assert!(second_fed < first_prompt, "{second_fed} vs {first_prompt}");
}

#[test]
fn perplexity_json() {
    let Some(m) = test_model(SMOLLM) else { return };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.txt");
    std::fs::write(
        &f,
        "The quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    let o = run(&[
        "perplexity",
        m.to_str().unwrap(),
        f.to_str().unwrap(),
        "--ctx",
        "32",
        "--chunks",
        "2",
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["n_windows"], 2);
    // llama-perplexity's rule: positions 16..30 of each window of 32 are scored.
    assert_eq!(j["n_scored"], 30);
    assert!(j["ppl_err"].as_f64().unwrap() >= 0.0);
    let ppl = j["ppl"].as_f64().unwrap();
    // A sentence repeated 20 times becomes very predictable after its first occurrence.
    assert!(ppl > 1.0 && ppl < 20.0, "ppl {ppl}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    assert_fails(
        &["run", missing.to_str().unwrap(), "-p", "hi"],
        "does not exist",
    );

    let corrupt = dir.path().join("corrupt.gguf");
    std::fs::write(&corrupt, b"this is not a model at all").unwrap();
    assert_fails(&["run", corrupt.to_str().unwrap(), "-p", "hi"], "GGUF");

    let gpt2 = dir.path().join("gpt2.gguf");
    let bytes = GgufWriter::new()
        .kv("general.architecture", Value::String("gpt2".into()))
        .tensor(
            "token_embd.weight",
            &[32, 4],
            GgmlType::F32,
            vec![0; 32 * 4 * 4],
        )
        .to_bytes();
    std::fs::write(&gpt2, bytes).unwrap();
    assert_fails(
        &["run", gpt2.to_str().unwrap(), "-p", "hi"],
        "architecture 'gpt2' is not supported",
    );

    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    assert_fails(&["run", m, "-p", ""], "prompt is empty");
    assert_fails(
        &[
            "run",
            m,
            "--ctx",
            "8",
            "--backend",
            "cpu",
            "-p",
            "one two three four five six seven eight nine ten",
        ],
        "longer than the context",
    );
    assert_fails(
        &[
            "run",
            m,
            "--ctx",
            "16",
            "-n",
            "100",
            "--backend",
            "cpu",
            "-p",
            "Hi",
        ],
        "more than the context",
    );
    assert_fails(&["run", m, "--temp=-1", "-p", "Hi"], "--temp");
    assert_fails(&["perplexity", m, missing.to_str().unwrap()], "nope.gguf");
}
