//! llama.cpp's spellings (`-m`, `-c`, `-f`, `-ngl`, `-fa`, `--system` implying chat) on the built
//! binary with the real small model; the rewrite rules themselves are unit-tested in
//! `cmd::compat`.

use crate::util::{run, test_model, SMOLLM};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_and_perplexity_take_llama_cpp_flags() {
    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    let o = run(&[
        "run",
        "-m",
        m,
        "-c",
        "64",
        "-ngl",
        "99",
        "-fa",
        "on",
        "-p",
        "Hello",
        "-n",
        "2",
        "--temp",
        "0",
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("context 64"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "One two three four five six seven eight. ".repeat(8)).unwrap();
    let o = run(&[
        "perplexity",
        "-f",
        text.to_str().unwrap(),
        "-m",
        m,
        "--ctx-size",
        "16",
        "--chunks",
        "1",
        "-ngl",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ctx"], 16);
    // -ngl 0 means the CPU.
    assert!(stderr(&o).contains("on cpu"), "{}", stderr(&o));
}

#[test]
fn bench_takes_ngl_and_fa() {
    let Some(m) = test_model(SMOLLM) else { return };
    let o = run(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-ngl",
        "99",
        "-fa",
        "1",
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--backend",
        "cpu",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().unwrap().len() >= 3);
}

#[test]
fn a_partial_offload_is_explained() {
    for args in [
        vec!["bench", "-m", "m.gguf", "-ngl", "20"],
        vec!["run", "m.gguf", "--n-gpu-layers", "7", "-p", "hi"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("no partial offload") && e.contains("99") && e.contains("--backend cpu"),
            "{e}"
        );
    }
}

#[test]
fn system_without_chat_runs_a_chat_turn() {
    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    let tokens = |extra: &[&str]| {
        let mut a = vec![
            "run",
            m,
            "-p",
            "Hi",
            "-n",
            "1",
            "--temp",
            "0",
            "--backend",
            "cpu",
            "--json",
        ];
        a.extend_from_slice(extra);
        let o = run(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j["prompt_tokens"].as_u64().unwrap()
    };
    let plain = tokens(&[]);
    let with_system = tokens(&["--system", "Be brief."]);
    let chat = tokens(&["--chat", "--system", "Be brief."]);
    // The system message went through the chat template, exactly as with --chat.
    assert_eq!(with_system, chat);
    assert!(with_system > plain + 3, "{with_system} vs {plain}");
}
