//! `pigpu doctor --log` on real logs that were not used to write its signatures
//! (tests/fixtures/doctor/held-out/): each must give the cause its thread records, from the
//! table in that folder's INDEX.md, and nothing else may warn or fail.

use std::fs;
use std::path::PathBuf;

use crate::fake_root::check_real_log;
use crate::util::root as project_root;

fn held_out() -> PathBuf {
    project_root().join("tests/fixtures/doctor/held-out")
}

/// (file, expected (id, status) pairs) from INDEX.md's table; `none` is an empty list.
fn index() -> Vec<(String, Vec<(String, String)>)> {
    let text = fs::read_to_string(held_out().join("INDEX.md")).unwrap();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| h")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4,
            "INDEX.md row without an expect column: {line}"
        );
        let expect = if cells[2] == "none" {
            Vec::new()
        } else {
            cells[2]
                .split_whitespace()
                .map(|pair| {
                    let (id, status) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("INDEX.md: {pair:?} is not id=status"));
                    (id.to_string(), status.to_string())
                })
                .collect()
        };
        rows.push((cells[1].to_string(), expect));
    }
    rows
}

#[test]
fn held_out_real_logs_give_the_recorded_cause() {
    let rows = index();
    let mut files: Vec<String> = fs::read_dir(held_out())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    files.sort();
    let listed: Vec<&str> = rows.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files, listed,
        "every held-out log has one INDEX.md row, in order"
    );
    assert!(rows.len() >= 10, "only {} held-out logs", rows.len());
    for (name, want) in &rows {
        let want: Vec<(&str, &str)> = want.iter().map(|(i, s)| (i.as_str(), s.as_str())).collect();
        check_real_log(&held_out().join(name), &want);
    }
}
