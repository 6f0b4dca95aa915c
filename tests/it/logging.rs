//! The global logging flags: `-q`, `-v`/`-vv`, `--log-file`, and the `PIGPU_LOG` default, on
//! the built binary.

use crate::util::{pigpu, run, test_model, SMOLLM};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn verbose_levels_and_the_environment_default() {
    let Some(m) = test_model(SMOLLM) else { return };
    let m = m.to_str().unwrap();
    let plain = run(&["inspect", m]);
    assert!(plain.status.success());
    assert!(!stderr(&plain).contains("log level"), "{}", stderr(&plain));
    // Before or after the subcommand, short or long.
    for args in [vec!["-v", "inspect", m], vec!["inspect", m, "--verbose"]] {
        let o = run(&args);
        assert!(
            stderr(&o).contains("pigpu: pigpu ") && stderr(&o).contains("log level debug"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let o = run(&["inspect", m, "-vv"]);
    assert!(stderr(&o).contains("log level trace"), "{}", stderr(&o));
    let o = pigpu()
        .args(["inspect", m])
        .env("PIGPU_LOG", "debug")
        .output()
        .unwrap();
    assert!(stderr(&o).contains("log level debug"), "{}", stderr(&o));
    // A flag beats the environment.
    let o = pigpu()
        .args(["-q", "inspect", m])
        .env("PIGPU_LOG", "debug")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_bad_level_or_conflicting_flags_are_errors() {
    let o = pigpu()
        .args(["inspect", "x.gguf"])
        .env("PIGPU_LOG", "loud")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("PIGPU_LOG") && e.contains("loud") && e.contains("trace"),
        "{e}"
    );
    let o = run(&["-q", "-v", "inspect", "x.gguf"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn quiet_hides_status_lines_and_log_file_keeps_them() {
    let Some(m) = test_model(SMOLLM) else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "One two three four five six seven eight. ".repeat(8)).unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "perplexity".to_string(),
            m.to_str().unwrap().into(),
            text.to_str().unwrap().into(),
            "-c".into(),
            "16".into(),
            "--chunks".into(),
            "1".into(),
            "--backend".into(),
            "cpu".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = pigpu().args(args(&[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pigpu: scored 7 tokens"),
        "{}",
        stderr(&o)
    );

    let log = dir.path().join("sub.log");
    let log_s = log.to_str().unwrap().to_string();
    let o = pigpu()
        .args(args(&["-q", "--log-file", &log_s]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "-q leaves stderr empty on success");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("perplexity: "));
    // -q keeps the file at the same level: nothing below errors was written.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");

    let o = pigpu()
        .args(args(&["-v", "--log-file", &log_s]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let written = std::fs::read_to_string(&log).unwrap();
    let line = written
        .lines()
        .find(|l| l.contains("scored 7 tokens"))
        .unwrap_or_else(|| panic!("no status line in the log file:\n{written}"));
    // `2026-12-04T22:30:01.123Z INFO  pigpu::cmd::perplexity: scored …`
    assert!(
        line.len() > 25 && &line[4..5] == "-" && &line[23..24] == "Z",
        "{line}"
    );
    assert!(
        line.contains(" INFO ") && line.contains("pigpu::cmd::perplexity"),
        "{line}"
    );
    assert!(written.contains(" DEBUG "), "{written}");

    let o = run(&[
        "--log-file",
        dir.path().to_str().unwrap(),
        "inspect",
        "x.gguf",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
}
