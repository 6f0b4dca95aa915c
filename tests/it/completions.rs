//! `pigpu completions`: the bash script is loaded into a real bash and asked to complete; the
//! man pages are rendered by a real `man` with warnings on.

use std::process::Command;

use tempfile::TempDir;

use crate::util::run;

/// What bash's completion function offers for `words` (the last one being completed).
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let t = TempDir::new().unwrap();
    let file = t.path().join("pigpu.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cur = words.last().unwrap();
    let prev = words[words.len() - 2];
    let prog = format!(
        ". '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _pigpu pigpu '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &prog])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let out = run(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _pigpu"), "{script}");

    let subs = bash_complete(&script, &["pigpu", "se"]);
    assert_eq!(subs, ["setup", "serve"], "{subs:?}");
    let all = bash_complete(&script, &["pigpu", ""]);
    for sub in [
        "setup",
        "doctor",
        "run",
        "serve",
        "bench",
        "inspect",
        "completions",
    ] {
        assert!(all.iter().any(|s| s == sub), "{sub} not offered: {all:?}");
    }
    let flags = bash_complete(&script, &["pigpu", "setup", "--p"]);
    assert_eq!(flags, ["--pcie-gen", "--persist"], "{flags:?}");
    let shells = bash_complete(&script, &["pigpu", "completions", "z"]);
    assert_eq!(shells, ["zsh"], "{shells:?}");
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    for (shell, marker) in [("zsh", "#compdef pigpu"), ("fish", "complete -c pigpu")] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no {marker}");
        assert!(
            text.contains("setup") && text.contains("pcie-gen"),
            "{shell}"
        );
    }
}

#[test]
fn completions_without_a_shell_or_with_an_unknown_one_exit_2() {
    let none = run(&["completions"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("<SHELL>"));
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn man_pages_for_every_subcommand_render_without_warnings() {
    let t = TempDir::new().unwrap();
    let dir = t.path().join("man1");
    let out = run(&["completions", "--man", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    // Every subcommand in --help (the lines under "Commands:" but `help`) has a page.
    let subs: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .collect();
    assert!(subs.len() >= 8, "{subs:?}");
    assert!(dir.join("pigpu.1").is_file());
    for sub in &subs {
        let page = dir.join(format!("pigpu-{sub}.1"));
        assert!(page.is_file(), "no man page for {sub}; wrote:\n{listed}");
    }
    // `man --warnings` is what lintian runs on packaged pages (groff warnings on stderr).
    let render = |page: &std::path::Path| {
        let man = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db) is installed by scripts/install-deps.sh");
        assert!(man.status.success(), "{}", page.display());
        assert_eq!(
            String::from_utf8_lossy(&man.stderr),
            "",
            "{}",
            page.display()
        );
        String::from_utf8_lossy(&man.stdout).into_owned()
    };
    for page in listed.lines() {
        render(std::path::Path::new(page));
    }
    let text = render(&dir.join("pigpu-setup.1"));
    assert!(text.contains("--pcie-gen"), "{text}");
    // The examples survive (man fills the text, so compare with whitespace collapsed).
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("sudo pigpu setup --undo"),
        "examples kept: {text}"
    );
}
