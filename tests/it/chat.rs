//! `pigpu run --chat` in a real terminal (a pty) with the small real model, greedy: the line
//! editor (arrow keys, multi-line input, history across sessions), every kind of slash command,
//! Ctrl-C during an answer and at the prompt, and a conversation longer than a small context.

use std::path::Path;

use crate::pty::Pty;
use crate::util::{pigpu, test_model, SMOLLM};

/// A chat on a pty, with its history in `state` and files relative to `state`.
fn chat(model: &Path, state: &Path, args: &[&str]) -> Pty {
    let mut cmd = pigpu();
    cmd.args([
        "run",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--temp",
        "0",
    ])
    .args(args)
    .current_dir(state)
    .env("XDG_STATE_HOME", state)
    .env_remove("PIGPU_LOG");
    let mut p = Pty::spawn(cmd);
    p.expect("/help lists the commands", 60);
    p.expect("> ", 10);
    p
}

/// Types a line and waits for the next prompt (typed-ahead lines would be lost while an answer
/// streams, as they are for a person).
fn line(p: &mut Pty, text: &str, secs: u64) -> String {
    p.send(text);
    p.send("\r");
    p.expect("\n> ", secs)
}

#[test]
fn chat_on_a_terminal_edits_lines_runs_commands_and_survives_ctrl_c() {
    let Some(m) = test_model(SMOLLM) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut p = chat(&m, dir.path(), &["-n", "12"]);

    let help = line(&mut p, "/help", 10);
    for want in [
        "/clear", "/system", "/set", "/save", "/load", "/stats", "/bye", "Ctrl-C", "\\",
    ] {
        assert!(help.contains(want), "/help lacks {want:?}: {help}");
    }
    let unknown = line(&mut p, "/frobnicate", 10);
    assert!(
        unknown.contains("unknown command /frobnicate") && unknown.contains("/save"),
        "{unknown}"
    );

    // Arrow keys edit: "Be brif." ← ← "e" Ctrl-E is "Be brief."; a trailing backslash then
    // continues the entry on the next line.
    p.send("/system Be brif.\x1b[D\x1b[De\x05\\\r");
    line(&mut p, "Answer in English.", 10);
    let sys = line(&mut p, "/system", 10);
    assert!(
        sys.contains("system prompt: Be brief.\nAnswer in English."),
        "{sys}"
    );

    let set = line(&mut p, "/set temp 0.5", 10);
    assert!(set.contains("temp 0.5"), "{set}");
    let bad = line(&mut p, "/set top_k many", 10);
    assert!(
        bad.contains("/set top_k many: expected a whole number"),
        "{bad}"
    );
    line(&mut p, "/set temp 0", 10);
    let shown = line(&mut p, "/set", 10);
    assert!(
        shown.contains("temp 0 ") && shown.contains("n 12"),
        "{shown}"
    );

    // Two turns; the second builds on the first.
    let a1 = line(&mut p, "What is the capital of France?", 120);
    assert!(a1.contains("Paris") && a1.contains("generated"), "{a1}");
    let a2 = line(&mut p, "And of Germany?", 120);
    assert!(a2.contains("generated"), "{a2}");
    let stats = line(&mut p, "/stats", 10);
    assert!(
        stats.contains("last answer: ")
            && stats.contains("context: ")
            && stats.contains("(4 messages and the system prompt)"),
        "{stats}"
    );

    // Save, clear, fail to load a missing file (the chat goes on), load.
    let saved = line(&mut p, "/save conv.json", 10);
    assert!(saved.contains("saved 4 messages"), "{saved}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("conv.json")).unwrap()).unwrap();
    assert_eq!(j["system"], "Be brief.\nAnswer in English.");
    assert_eq!(j["messages"][0]["role"], "user");
    assert_eq!(
        j["messages"][0]["content"],
        "What is the capital of France?"
    );
    assert_eq!(j["messages"][1]["role"], "assistant");
    let cleared = line(&mut p, "/clear", 10);
    assert!(cleared.contains("conversation cleared"), "{cleared}");
    assert!(line(&mut p, "/stats", 10).contains("(0 messages and the system prompt)"));
    let missing = line(&mut p, "/load nothere.json", 10);
    assert!(
        missing.contains("cannot read conversation nothere.json"),
        "{missing}"
    );
    let loaded = line(&mut p, "/load conv.json", 10);
    assert!(
        loaded.contains("loaded 4 messages and a system prompt"),
        "{loaded}"
    );

    // Ctrl-C during a long answer stops it; the chat goes on with another turn.
    line(&mut p, "/set n off", 10);
    p.send("Write a long story about a dragon.\r");
    p.expect("dragon.\n", 10);
    p.expect_more(30, 120);
    p.send("\x03");
    let stopped = p.expect("\n> ", 60);
    assert!(stopped.contains("[answer stopped by Ctrl-C]"), "{stopped}");
    // Ctrl-C at the prompt drops the line typed so far.
    p.send("never sent");
    p.send("\x03");
    p.expect("\n> ", 10);
    line(&mut p, "/set n 8", 10);
    let after = line(&mut p, "What is 2+2?", 120);
    assert!(
        after.contains("generated") && !after.contains("never sent"),
        "{after}"
    );
    let stats = line(&mut p, "/stats", 10);
    assert!(
        stats.contains("(8 messages and the system prompt)"),
        "{stats}"
    );

    p.send("/bye\r");
    assert!(p.wait(20).success(), "{}", p.screen());

    // History is kept across sessions: Up recalls the last entry (/bye) in a new chat.
    let hist = std::fs::read_to_string(dir.path().join("pigpu/chat_history")).unwrap();
    assert!(hist.contains("What is the capital of France?"), "{hist}");
    let mut p = chat(&m, dir.path(), &[]);
    p.send("\x1b[A");
    p.send("\r");
    assert!(p.wait(20).success(), "{}", p.screen());
}

#[test]
fn chat_longer_than_the_context_drops_old_turns_and_says_so_once() {
    let Some(m) = test_model(SMOLLM) else { return };
    let dir = tempfile::tempdir().unwrap();
    // -v shows the later drops, which are not announced again.
    let args = ["-c", "256", "-n", "24", "--system", "Be brief.", "-v"];
    let mut p = chat(&m, dir.path(), &args);
    let notice = "filled the context of 256 tokens";
    for i in 1..=10 {
        let a = line(
            &mut p,
            &format!("Tell me one fact about the number {i}."),
            120,
        );
        assert!(a.contains("generated"), "turn {i}: {a}");
        let stats = line(&mut p, "/stats", 10);
        let used: usize = stats
            .split("context: ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stats}"));
        assert!(used <= 256, "{stats}");
    }
    // Ten turns of about 50 tokens cannot all be in a 256-token context: old ones went (twice or
    // more), the system prompt stayed, and the user was told once.
    let stats = line(&mut p, "/stats", 10);
    assert!(stats.contains("and the system prompt)"), "{stats}");
    let kept: usize = stats
        .split("in use (")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(kept < 16 && kept.is_multiple_of(2), "{stats}");
    assert_eq!(p.screen().matches(notice).count(), 1, "{}", p.screen());
    assert!(p.screen().contains("context full again"), "{}", p.screen());

    // One message larger than the context is refused with the numbers; the chat goes on.
    let refused = line(&mut p, &"word ".repeat(300), 60);
    assert!(
        refused.contains("the message is") && refused.contains("the context of 256 tokens"),
        "{refused}"
    );
    let a = line(&mut p, "What is 2+2?", 120);
    assert!(a.contains("generated"), "{a}");
    p.send("\x04");
    assert!(p.wait(20).success(), "{}", p.screen());
}
