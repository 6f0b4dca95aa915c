//! The command-line surface: help, exit codes, error chains.

use crate::util::run;

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in [
        "setup",
        "doctor",
        "run",
        "bench",
        "inspect",
        "tokenize",
        "perplexity",
        "completions",
    ] {
        let out = run(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{sub} --help has no example:\n{text}"
        );
    }
}

#[test]
fn unknown_subcommand_exits_2() {
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
