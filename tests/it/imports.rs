//! The import-circle check (`scripts/import_circles.py`, run by `lint`): it finds a circle
//! between files and between modules with the names behind each arrow, does not count a child
//! naming its folder's `mod.rs` or test code, and the crate's own `src/` has no circle.

use std::path::Path;
use std::process::{Command, Output};

fn check(src: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/import_circles.py");
    Command::new("python3")
        .arg(script)
        .arg(src)
        .output()
        .expect("python3 runs")
}

/// Writes `files` (path under src/, text) into a fresh tree and returns (dir, its src/).
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for (path, text) in files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    (dir, src)
}

#[test]
fn the_crate_has_no_import_circle() {
    let out = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(" 0 circle(s)"), "{text}");
}

#[test]
fn circles_between_files_and_between_modules_are_named() {
    let (_dir, src) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod eng;\n"),
        // Files inside one folder: kernels <-> profile through a use group and an inline path.
        (
            "eng/mod.rs",
            "mod kernels;\nmod profile;\npub use kernels::Kernels;\n",
        ),
        (
            "eng/kernels.rs",
            "use super::{profile::{self, Stamp as S}};\npub struct Kernels;\n",
        ),
        (
            "eng/profile.rs",
            "pub struct Stamp;\nfn f() -> super::kernels::Kernels { todo!() }\n",
        ),
        // Modules: a -> b and b -> a (through b's child file).
        ("a.rs", "use crate::b::X;\npub struct Y;\n"),
        ("b/mod.rs", "mod inner;\npub use inner::X;\n"),
        ("b/inner.rs", "pub struct X;\npub fn g(_: crate::a::Y) {}\n"),
    ]);
    let out = check(&src);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("circle in src: a, b"), "{text}");
    assert!(text.contains("b/inner -> a: Y"), "{text}");
    assert!(
        text.contains("circle in src/eng: kernels, profile"),
        "{text}"
    );
    assert!(text.contains("eng/kernels -> eng/profile: Stamp"), "{text}");
    assert!(
        text.contains("eng/profile -> eng/kernels: Kernels"),
        "{text}"
    );
    assert!(text.contains("2 circle(s)"), "{text}");
}

#[test]
fn a_child_naming_its_folder_and_test_code_are_no_circle() {
    // write -> catalog always; catalog -> write only in test code (first) or in plain code
    // (second, the control: then it is a circle).
    let catalog_test =
        "pub struct Shape;\n#[cfg(test)]\nmod tests {\n    use crate::shapes::write::go;\n}\n";
    let catalog_plain = "pub struct Shape;\nmod tests {\n    use crate::shapes::write::go;\n}\n";
    for (catalog, circle) in [(catalog_test, false), (catalog_plain, true)] {
        let (_dir, src) = tree(&[
            ("lib.rs", "pub mod shapes;\n"),
            (
                "shapes/mod.rs",
                "mod catalog;\nmod write;\npub struct Plan;\npub use catalog::Shape;\n",
            ),
            // Up to the folder's face (mod.rs names write back): no arrow between its files.
            (
                "shapes/write.rs",
                "use super::catalog::Shape;\nuse super::family::F;\nuse super::Plan;\npub fn go() {}\n",
            ),
            ("shapes/catalog.rs", catalog),
            // A comment naming write is no arrow (else family <-> write).
            (
                "shapes/family.rs",
                "//! see `crate::shapes::write::go`\npub struct F;\n",
            ),
        ]);
        let out = check(&src);
        let text = String::from_utf8_lossy(&out.stdout);
        if circle {
            assert_eq!(out.status.code(), Some(1), "{text}");
            assert!(
                text.contains("circle in src/shapes: catalog, write"),
                "{text}"
            );
            assert!(
                text.contains("shapes/catalog -> shapes/write: go"),
                "{text}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "{text}");
            assert!(text.contains(" 0 circle(s)"), "{text}");
        }
    }
}
