//! `pigpu serve`'s prompt cache on the CPU engine (the SmolLM2 test model) and the Vulkan engine
//! (the tiny shaped model): a slot keeps its cache after a job, and a request whose prompt
//! starts with those tokens feeds only the rest (reported as OpenAI's
//! `usage.prompt_tokens_details.cached_tokens`), with the answer of a full prefill.

use serde_json::{json, Value};

use crate::engines::TINY;
use crate::serve::{run_text, run_text_with, Server};
use crate::util::{test_model, SMOLLM};

/// A greedy completion: (text, prompt tokens, cached prompt tokens).
fn complete(s: &Server, prompt: &str, n: usize, cache: bool) -> (String, u64, u64) {
    let body = json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "cache_prompt": cache});
    let (st, v): (u16, Value) = s.post("/v1/completions", &body.to_string());
    assert_eq!(st, 200, "{v}\n{}", s.log());
    let u = &v["usage"];
    (
        v["choices"][0]["text"].as_str().unwrap().to_string(),
        u["prompt_tokens"].as_u64().unwrap(),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

#[test]
fn serve_reuses_a_slots_cached_prompt_with_the_same_answers() {
    let Some(m) = test_model(SMOLLM) else { return };
    let s = Server::start(&m, &["--parallel", "2"]);
    let p1 = "The capital of France is";
    let expected = run_text(&m, p1, 12);

    let (t, n, cached) = complete(&s, p1, 12, true);
    assert_eq!((t.as_str(), cached), (expected.as_str(), 0), "a fresh slot");
    // The same prompt again: all but its last token come from the cache.
    let (t, n2, cached) = complete(&s, p1, 12, true);
    assert_eq!((t.as_str(), n2, cached), (expected.as_str(), n, n - 1));
    // `cache_prompt: false` feeds it all again.
    let (t, _, cached) = complete(&s, p1, 12, false);
    assert_eq!((t.as_str(), cached), (expected.as_str(), 0));

    // A prompt sharing only the BOS goes to the other (unused) slot, so the first one's cache
    // survives it and a continuation of the first conversation still finds it.
    let p2 = "Once upon a time";
    let (t, _, cached) = complete(&s, p2, 8, true);
    assert_eq!((t, cached), (run_text(&m, p2, 8), 0));
    // The first prompt, its answer and more: the slot fed all of p1 and 11 of its 12 answer
    // tokens (the last one sampled was never fed); the answer is `pigpu run`'s for the whole.
    let p3 = format!("{p1}{expected} The capital of Spain is");
    let (t, n3, cached) = complete(&s, &p3, 12, true);
    assert_eq!(t, run_text(&m, &p3, 12));
    assert!(
        cached >= n && cached < n3,
        "cached {cached} of {n3} tokens; the first prompt alone was {n}"
    );
}

/// The same on the Vulkan engine (lavapipe, validation layer on): a repeated prompt and a
/// conversation's next turn start from the slot's cache (the engine rewound to the shared
/// part) with `pigpu run --backend vulkan`'s answers, `cache_prompt: false` reports nothing
/// cached, and a cached continuation decoded together with a new prompt (one batched pass)
/// still gets the sequential answers. On the tiny shaped model (`engines::TINY`, written to a
/// file for the binary; SmolLM2 until 2026-12-06): which tokens a slot keeps and feeds is
/// serve's and the engine's bookkeeping, the same on any model, and the answers are compared
/// with `pigpu run`'s on the same file. The first prompt is longer than the CPU test's and ends
/// in a newline: the tiny model's byte-level vocabulary spends many tokens on text (and its
/// answers are noise), and serve gives a prompt the slot that holds at least half of it, so
/// the next turn must still be more than half the first prompt, whose last token the answer
/// must not merge into.
#[test]
fn serve_vulkan_reuses_a_slots_cached_prompt_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let m = crate::engines::shaped_file(TINY.0, TINY.1, dir.path());
    let engine = [
        "--backend",
        "vulkan",
        "--device",
        "llvmpipe",
        "--ctx",
        "128",
    ];
    let args = [&engine[..], &["--parallel", "2"]].concat();
    let s = Server::start_env(&m, &args, &[("PIGPU_VK_VALIDATION", "1")]);
    assert!(s.log().contains("on vulkan: llvmpipe"), "{}", s.log());
    let run = |p: &str, n: usize| run_text_with(&m, p, n, &engine);
    let p1 = "The capital of France is Paris, and the capital of Italy is Rome.\n";
    let expected = run(p1, 8);

    let (t, n, cached) = complete(&s, p1, 8, true);
    assert_eq!((t.as_str(), cached), (expected.as_str(), 0), "a fresh slot");
    let (t, n2, cached) = complete(&s, p1, 8, true);
    assert_eq!((t.as_str(), n2, cached), (expected.as_str(), n, n - 1));
    let (t, _, cached) = complete(&s, p1, 8, false);
    assert_eq!((t.as_str(), cached), (expected.as_str(), 0));

    let p3 = format!("{p1}{expected} The capital of Spain is");
    let want3 = run(&p3, 8);
    let (t, n3, cached) = complete(&s, &p3, 8, true);
    assert_eq!(t, want3);
    assert!(
        cached >= n && cached < n3,
        "cached {cached} of {n3} tokens; the first prompt alone was {n}"
    );

    // Together: p3 again (from its slot's cache) and a new prompt in the other slot.
    let p2 = "Once upon a time";
    let want2 = run(p2, 8);
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| complete(&s, &p3, 8, true));
        let b = sc.spawn(|| complete(&s, p2, 8, true));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        (a.0.as_str(), a.2),
        (want3.as_str(), n3 - 1),
        "the cached one"
    );
    assert_eq!(b.0, want2);
    let log = s.log();
    assert!(!log.contains("validation error"), "{log}");
}
