//! The memory check before loading (engine::fit), through the command line: on lavapipe a cap
//! on device memory (`PIGPU_VK_MEM_LIMIT`) refuses SmolLM2 with the numbers and the largest
//! context that fits, and that context then runs; `--backend auto` moves to the CPU in one line
//! when the GPU is too small; on the CPU a huge `--ctx` names the largest that fits.

use std::process::Output;

use crate::util;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `N` from "the largest context that fits is --ctx N".
fn suggested_ctx(stderr: &str) -> usize {
    let key = "the largest context that fits is --ctx ";
    let at = stderr
        .find(key)
        .unwrap_or_else(|| panic!("no suggestion: {stderr}"))
        + key.len();
    let digits: String = stderr[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

fn run_smollm(backend: &str, ctx: &str, cap: Option<&str>) -> Option<Output> {
    let m = util::test_model(util::SMOLLM)?;
    let mut c = util::pigpu();
    c.arg("run")
        .arg(&m)
        .args(["--backend", backend, "--device", "llvmpipe", "--ctx", ctx])
        .args(["-p", "The capital of France is", "-n", "4", "--temp", "0"]);
    if let Some(cap) = cap {
        c.env("PIGPU_VK_MEM_LIMIT", cap);
    }
    Some(c.output().expect("spawn pigpu"))
}

#[test]
fn a_capped_gpu_refuses_with_the_numbers_and_the_suggested_ctx_runs() {
    // SmolLM2-135M Q4_1: ~88 MiB of weights, 22.5 KiB of f16 KV per position on the GPU, so
    // 8192 positions (180 MiB of KV) do not fit under a 200 MiB cap.
    let Some(o) = run_smollm("vulkan", "8192", Some("200M")) else {
        return;
    };
    let err = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for want in [
        "--ctx 8192 needs 180.0 MiB for the KV cache",
        "of the 200.0 MiB of device memory on llvmpipe",
        "(PIGPU_VK_MEM_LIMIT)",
        "after the weights (",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    // Refused before the upload: the upload's progress and the summary never appear.
    assert!(!err.contains("panicked"), "{err}");
    let n = suggested_ctx(&err);
    assert!((1024..8192).contains(&n), "{n}: {err}");

    let o = run_smollm("vulkan", &n.to_string(), Some("200M")).unwrap();
    assert!(o.status.success(), "--ctx {n}: {}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "no text at --ctx {n}: {}",
        text(&o)
    );
    // One position more is refused again: the suggestion is the largest.
    let o = run_smollm("vulkan", &(n + 1).to_string(), Some("200M")).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(suggested_ctx(&text(&o)), n);
}

#[test]
fn a_gpu_too_small_for_the_weights_says_so_and_auto_moves_to_the_cpu() {
    let Some(o) = run_smollm("vulkan", "512", Some("50M")) else {
        return;
    };
    let err = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the model does not fit in the 50.0 MiB of device memory on llvmpipe"),
        "{err}"
    );
    assert!(err.contains("use a smaller model or quantization"), "{err}");

    let o = run_smollm("auto", "512", Some("50M")).unwrap();
    let err = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("does not fit in the GPU's memory"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("using the CPU"), "{err}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "{err}"
    );
}

#[test]
fn a_huge_ctx_on_the_cpu_names_the_largest_that_fits() {
    // 10^9 positions of f16 KV for SmolLM2 are ~21 TiB: beyond this machine, but not absurd.
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let o = util::pigpu()
        .arg("run")
        .arg(&m)
        .args(["--backend", "cpu", "--ctx", "1000000000", "-p", "hi"])
        .output()
        .expect("spawn pigpu");
    let err = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--ctx 1000000000 needs"), "{err}");
    assert!(
        err.contains("of memory available (MemAvailable) after the weights"),
        "{err}"
    );
    let n = suggested_ctx(&err);
    assert!((64..1_000_000_000).contains(&n), "{n}: {err}");
}
