//! `pigpu perplexity` against llama-perplexity's own numbers (tests/fixtures/reference/
//! llama-perplexity.json, made by scripts/ref/llama_perplexity.py) on both real test models, and
//! its input errors.

use crate::util::{root, run, test_model, QWEN, SMOLLM};

/// Runs `pigpu perplexity` on ppl.txt with `--ctx ctx` and compares perplexity and its ±
/// estimate with what llama-perplexity printed for the same model, text and window.
fn check(model_file: &str, ctx: u64) {
    let Some(m) = test_model(model_file) else {
        return;
    };
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/reference/llama-perplexity.json"))
            .unwrap(),
    )
    .unwrap();
    let want = reference["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model_file && r["ctx"] == ctx)
        .expect("reference row");
    let text = root().join("tests/fixtures/reference/ppl.txt");
    let ctx_s = ctx.to_string();
    let o = run(&[
        "perplexity",
        m.to_str().unwrap(),
        text.to_str().unwrap(),
        "-c",
        &ctx_s,
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        got["n_windows"], want["n_windows"],
        "{model_file} ctx {ctx}"
    );
    let n_windows = want["n_windows"].as_u64().unwrap();
    assert_eq!(
        got["n_scored"].as_u64().unwrap(),
        n_windows * (ctx - ctx / 2 - 1)
    );
    let (p, q) = (got["ppl"].as_f64().unwrap(), want["ppl"].as_f64().unwrap());
    let rel = (p - q).abs() / q;
    eprintln!(
        "{model_file} ctx {ctx}: pigpu {p:.4}, llama-perplexity {q:.4} ({:.3} %)",
        rel * 100.0
    );
    assert!(
        rel < 0.01,
        "{model_file} ctx {ctx}: pigpu {p} vs llama-perplexity {q}"
    );
    let (e, f) = (
        got["ppl_err"].as_f64().unwrap(),
        want["ppl_err"].as_f64().unwrap(),
    );
    assert!((e - f).abs() / f < 0.05, "± {e} vs llama-perplexity's {f}");
    // The running value after each window follows llama-perplexity's `[1]…,[2]…` line.
    let ours = got["window_ppl"].as_array().unwrap();
    let theirs = want["window_ppl"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() / b < 0.02, "window: {a} vs {b}");
    }
}

#[test]
fn smollm_matches_llama_perplexity() {
    check(SMOLLM, 128);
    check(SMOLLM, 256);
}

#[test]
fn qwen_matches_llama_perplexity() {
    check(QWEN, 128);
}

#[test]
fn a_text_shorter_than_two_windows_is_named() {
    let Some(m) = test_model(SMOLLM) else {
        return;
    };
    let text = root().join("tests/fixtures/reference/ppl.txt");
    let o = run(&[
        "perplexity",
        m.to_str().unwrap(),
        text.to_str().unwrap(),
        "-c",
        "512",
        "--backend",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("needs at least 1024") && err.contains("ppl.txt"),
        "{err}"
    );
}

#[test]
fn a_directory_or_device_as_the_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, what) in [
        (vec!["run", d, "-p", "hi"], "is a directory"),
        (vec!["inspect", d], "is a directory"),
        (vec!["tokenize", d, "hi"], "is a directory"),
        (
            vec!["run", "/dev/null", "-p", "hi"],
            "is a character device",
        ),
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(what) && err.contains("expected"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("No such device") && !err.contains("panicked"),
            "{err}"
        );
    }
}
