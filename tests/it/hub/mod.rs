//! `pigpu pull`, `list`, `rm` and models by name, against a local server that answers like the
//! Hugging Face Hub (`server.rs`): quant choice, cache layout, resume after a cut connection, a
//! corrupted file refused and removed, 404/401/403/429, the token sent and never printed.

mod server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pigpu::gguf::{GgufWriter, Value};
use pigpu::quant::GgmlType;
use serde_json::Value as J;
use server::{sha256_hex, HubFile, HubServer, COMMIT};

const REPO: &str = "org/tiny-GGUF";
const TOKEN: &str = "hf_testsecret_4242";

/// A small valid GGUF (so `inspect` can open it by name), distinct per `tag`, ~`kib` KiB.
fn gguf(tag: &str, kib: usize) -> Vec<u8> {
    let n = kib * 256;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| ((i % 97) as f32 + tag.len() as f32).to_le_bytes())
        .collect();
    GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("general.name", Value::String(format!("tiny {tag}")))
        .tensor("t", &[n as u64], GgmlType::F32, data)
        .to_bytes()
}

struct Env {
    server: HubServer,
    dir: tempfile::TempDir,
    token: Option<&'static str>,
}

impl Env {
    fn new() -> Env {
        let server = HubServer::start();
        server.repo(
            REPO,
            vec![
                HubFile::new("README.md", b"# tiny".to_vec()),
                HubFile::new("tiny-Q2_K.gguf", gguf("q2", 16)),
                HubFile::new("tiny-Q4_K_M.gguf", gguf("q4km", 256)),
                HubFile::new("tiny-Q8_0.gguf", gguf("q8", 32)),
                HubFile::new("mmproj-tiny-f16.gguf", gguf("mm", 4)),
            ],
        );
        Env {
            server,
            dir: tempfile::tempdir().unwrap(),
            token: None,
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache()
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = crate::util::pigpu();
        c.args(args)
            .env("HF_ENDPOINT", &self.server.base)
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_HOME", self.dir.path().join("hf-home"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .stdin(Stdio::null());
        if let Some(t) = self.token {
            c.env("HF_TOKEN", t);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn file(&self, path: &str) -> HubFile {
        HubFile::new(
            path,
            match path {
                "tiny-Q4_K_M.gguf" => gguf("q4km", 256),
                "tiny-Q8_0.gguf" => gguf("q8", 32),
                _ => unreachable!(),
            },
        )
    }

    fn cdn_gets(&self) -> usize {
        self.server
            .seen()
            .iter()
            .filter(|s| s.path.starts_with("/cdn/"))
            .count()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    text(&out.stdout)
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stderr: {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn list_json(env: &Env) -> Vec<J> {
    serde_json::from_str::<J>(&ok(&env.run(&["list", "--json"])))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Files under `dir` whose names end with `suffix`, recursively.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

#[test]
fn pull_takes_q4_k_m_by_default_into_the_hf_layout_and_names_work() {
    let env = Env::new();
    let want = env.file("tiny-Q4_K_M.gguf");
    let out = env.run(&["pull", REPO]);
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("taking Q4_K_M (tiny-Q4_K_M.gguf) by default"),
        "{stderr}"
    );
    assert!(stderr.contains("also available: Q2_K, Q8_0"), "{stderr}");
    assert!(!stderr.contains("mmproj"), "{stderr}");

    // The Hugging Face cache layout: blob by sha256, relative snapshot link, refs/main.
    let rd = env.repo_dir(REPO);
    let blob = rd.join("blobs").join(&want.sha256);
    let link = rd.join("snapshots").join(COMMIT).join("tiny-Q4_K_M.gguf");
    assert_eq!(fs::read(&blob).unwrap(), want.bytes);
    assert_eq!(
        fs::read_link(&link).unwrap(),
        PathBuf::from(format!("../../blobs/{}", want.sha256))
    );
    assert_eq!(fs::read_to_string(rd.join("refs/main")).unwrap(), COMMIT);
    assert_eq!(stdout.trim(), link.to_str().unwrap());
    assert_eq!(
        fs::read_dir(rd.join("blobs")).unwrap().count(),
        1,
        "only the one blob"
    );
    // The listing asked for blobs; the file went through resolve (HEAD, then GET) and the CDN.
    let seen = env.server.seen();
    assert!(seen
        .iter()
        .any(|s| s.path == format!("/api/models/{REPO}/revision/main?blobs=true")));
    let resolve = format!("/{REPO}/resolve/{COMMIT}/tiny-Q4_K_M.gguf");
    assert!(seen.iter().any(|s| s.method == "HEAD" && s.path == resolve));
    assert!(seen.iter().any(|s| s.method == "GET" && s.path == resolve));
    assert_eq!(env.cdn_gets(), 1);

    let l = list_json(&env);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["name"], "org/tiny-GGUF:Q4_K_M");
    assert_eq!(l[0]["quant"], "Q4_K_M");
    assert_eq!(l[0]["size"], want.bytes.len());
    assert_eq!(l[0]["path"], link.to_str().unwrap());
    assert_eq!(l[0]["current"], true);
    let table = ok(&env.run(&["list"]));
    assert!(
        table.contains("org/tiny-GGUF:Q4_K_M") && table.contains("LAST USED"),
        "{table}"
    );

    // Commands take the name; opening it records the use.
    let j: J = serde_json::from_str(&ok(&env.run(&["inspect", REPO, "--json"]))).unwrap();
    assert_eq!(j["metadata"]["general.name"], "tiny q4km");
    let j: J = serde_json::from_str(&ok(&env.run(&[
        "inspect",
        "hf.co/org/tiny-GGUF:q4_k_m",
        "--json",
    ])))
    .unwrap();
    assert_eq!(j["file"], link.to_str().unwrap());
    assert!(list_json(&env)[0]["last_used_utc"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));

    // A second pull verifies what is there and downloads nothing.
    let again = env.run(&["pull", REPO]);
    ok(&again);
    assert!(
        text(&again.stderr).contains("already in the cache"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(env.cdn_gets(), 1);
}

#[test]
fn a_named_quant_is_taken_and_a_missing_one_lists_what_exists() {
    let env = Env::new();
    let out = env.run(&["pull", "hf.co/org/tiny-GGUF:q8_0"]);
    let path = ok(&out);
    assert!(path.trim().ends_with("tiny-Q8_0.gguf"), "{path}");
    assert_eq!(
        fs::read(path.trim()).unwrap(),
        env.file("tiny-Q8_0.gguf").bytes
    );

    let e = fails(&env.run(&["pull", "org/tiny-GGUF:Q5_K_M"]));
    assert!(
        e.contains("no Q5_K_M GGUF; available: Q2_K, Q4_K_M, Q8_0"),
        "{e}"
    );
    let e = fails(&env.run(&["pull", "not a name"]));
    assert!(e.contains("expected ORG/NAME"), "{e}");
    // A name that was not pulled: a clear error, and no network access.
    let before = env.server.seen().len();
    let e = fails(&env.run(&["inspect", "org/tiny-GGUF:Q2_K"]));
    assert!(
        e.contains("run `pigpu pull org/tiny-GGUF:Q2_K` first"),
        "{e}"
    );
    let e = fails(&env.run(&["tokenize", "org/other-GGUF", "hi"]));
    assert!(e.contains("pigpu pull org/other-GGUF"), "{e}");
    let e = fails(&env.run(&["serve", "org/other-GGUF", "--port", "0"]));
    assert!(e.contains("pigpu pull org/other-GGUF"), "{e}");
    // `run` and `bench` too; `run` in a script (no terminal) never pulls silently.
    let e = fails(&env.run(&["run", "org/other-GGUF", "-p", "hi", "-n", "1"]));
    assert!(e.contains("pigpu pull org/other-GGUF"), "{e}");
    let e = fails(&env.run(&["bench", "-m", "org/other-GGUF", "-p", "0", "-n", "1"]));
    assert!(e.contains("pigpu pull org/other-GGUF"), "{e}");
    assert_eq!(env.server.seen().len(), before);
    // A pulled name reaches the loader: the tiny file has no weights, so the model load (not the
    // name lookup) is what refuses it.
    for args in [
        &["run", "hf.co/org/tiny-GGUF:q8_0", "-p", "hi", "-n", "1"][..],
        &["bench", "-m", "org/tiny-GGUF:Q8_0", "-p", "0", "-n", "1"][..],
    ] {
        let e = fails(&env.run(args));
        assert!(
            !e.contains("pigpu pull") && !e.contains("No such file") && !e.contains("not found"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn a_cut_download_is_never_visible_and_resumes() {
    let env = Env::new();
    let want = env.file("tiny-Q4_K_M.gguf");
    env.server.cut_once(&want.sha256);
    let child = env
        .cmd(&["pull", REPO])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !env.server.cut_reached() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Half-way: the bytes are in a .part file; nothing under the final names.
    let rd = env.repo_dir(REPO);
    let part = rd.join("blobs").join(format!("{}.part", want.sha256));
    assert!(
        fs::metadata(&part).is_ok_and(|m| m.len() > 0),
        "no part file"
    );
    assert!(!rd.join("blobs").join(&want.sha256).exists());
    assert!(!rd.join("snapshots").exists());
    let out = child.wait_with_output().unwrap();
    let e = fails(&out);
    assert!(e.contains("run again to resume"), "{e}");
    assert!(!rd.join("blobs").join(&want.sha256).exists());
    assert!(list_json(&env).is_empty());

    let have = fs::metadata(&part).unwrap().len();
    ok(&env.run(&["pull", REPO]));
    let ranges: Vec<_> = env
        .server
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .filter_map(|s| s.range)
        .collect();
    assert_eq!(
        ranges,
        [format!("bytes={have}-")],
        "the second pull resumes"
    );
    assert_eq!(
        fs::read(rd.join("blobs").join(&want.sha256)).unwrap(),
        want.bytes
    );
    assert!(!part.exists());
}

#[test]
fn a_corrupted_file_is_refused_and_removed() {
    let env = Env::new();
    let mut f = env.file("tiny-Q4_K_M.gguf");
    // The bytes served differ from what the Hub's sha256 says (a flipped byte in transit).
    let mid = f.bytes.len() / 2;
    f.bytes[mid] ^= 0xff;
    env.server.repo("org/bad-GGUF", vec![f.clone()]);
    let e = fails(&env.run(&["pull", "org/bad-GGUF"]));
    assert!(
        e.contains("checksum mismatch") && e.contains(&f.sha256),
        "{e}"
    );
    let rd = env.repo_dir("org/bad-GGUF");
    assert!(files_ending(&rd, ".gguf").is_empty());
    assert!(
        fs::read_dir(rd.join("blobs")).unwrap().next().is_none(),
        "blob or part left"
    );
    assert!(!rd.join("snapshots").exists());
    assert!(list_json(&env).is_empty());
}

#[test]
fn the_sha256_can_come_from_the_file_endpoint_alone() {
    let env = Env::new();
    let mut f = env.file("tiny-Q8_0.gguf");
    f.listed_lfs = false;
    env.server.repo("org/etag-GGUF", vec![f.clone()]);
    let p = ok(&env.run(&["pull", "org/etag-GGUF"]));
    assert_eq!(fs::read(p.trim()).unwrap(), f.bytes);
    assert!(env
        .repo_dir("org/etag-GGUF")
        .join("blobs")
        .join(&f.sha256)
        .exists());
    // Listing and file endpoint disagree: refused before any download.
    let mut g = env.file("tiny-Q4_K_M.gguf");
    g.linked = Some(sha256_hex(b"other"));
    env.server.repo("org/two-GGUF", vec![g.clone()]);
    let e = fails(&env.run(&["pull", "org/two-GGUF"]));
    assert!(
        e.contains("the file endpoint says") && e.contains(&sha256_hex(b"other")),
        "{e}"
    );
    assert!(
        !env.server.seen().iter().any(|s| s.path.contains(&g.sha256)),
        "downloaded anyway"
    );
}

#[test]
fn hub_errors_are_clear() {
    let env = Env::new();
    let e = fails(&env.run(&["pull", "org/absent-GGUF"]));
    assert!(
        e.contains("org/absent-GGUF not found at") && e.contains("404"),
        "{e}"
    );

    env.server.force("/api/models/org/private", 401);
    let e = fails(&env.run(&["pull", "org/private-GGUF"]));
    assert!(e.contains("401") && e.contains("set HF_TOKEN"), "{e}");

    env.server
        .repo("org/gated-GGUF", vec![env.file("tiny-Q8_0.gguf")]);
    env.server.force("/org/gated-GGUF/resolve/", 403);
    let e = fails(&env.run(&["pull", "org/gated-GGUF"]));
    assert!(
        e.contains("403") && e.contains(&format!("{}/org/gated-GGUF", env.server.base)),
        "{e}"
    );

    env.server.force("/api/models/org/busy", 429);
    let e = fails(&env.run(&["pull", "org/busy-GGUF"]));
    assert!(e.contains("rate-limited") && e.contains("wait 7 s"), "{e}");

    env.server.repo(
        "org/safetensors",
        vec![HubFile::new("model.safetensors", vec![1, 2, 3])],
    );
    let e = fails(&env.run(&["pull", "org/safetensors"]));
    assert!(e.contains("has no GGUF files"), "{e}");

    env.server.repo(
        "org/split-GGUF",
        vec![
            HubFile::new("big-Q8_0-00001-of-00002.gguf", gguf("a", 4)),
            HubFile::new("big-Q8_0-00002-of-00002.gguf", vec![0; 64]),
        ],
    );
    let e = fails(&env.run(&["pull", "org/split-GGUF"]));
    assert!(
        e.contains("split into 2 files") && e.contains("not supported"),
        "{e}"
    );
    // Nothing was left behind by any of them.
    assert!(list_json(&env).is_empty());
}

#[test]
fn the_token_is_sent_as_bearer_and_never_printed() {
    let mut env = Env::new();
    env.token = Some(TOKEN);
    let out = env.run(&["pull", REPO]);
    ok(&out);
    assert!(!text(&out.stderr).contains(TOKEN) && !text(&out.stdout).contains(TOKEN));
    let seen = env.server.seen();
    let bearer = format!("Bearer {TOKEN}");
    for s in seen.iter().filter(|s| !s.path.starts_with("/cdn/")) {
        assert_eq!(s.auth.as_deref(), Some(bearer.as_str()), "{s:?}");
    }
    // Refused: the error says the token was refused, without showing it.
    env.server.force("/api/models/org/private", 401);
    let e = fails(&env.run(&["pull", "org/private-GGUF"]));
    assert!(
        e.contains("HF_TOKEN was sent and refused") && !e.contains(TOKEN),
        "{e}"
    );
    // Without HF_TOKEN, the token file `huggingface-cli login` writes is used.
    env.token = None;
    fs::create_dir_all(env.dir.path().join("hf-home")).unwrap();
    fs::write(env.dir.path().join("hf-home/token"), format!("{TOKEN}\n")).unwrap();
    ok(&env.run(&["pull", "org/tiny-GGUF:Q2_K"]));
    let last_api = env
        .server
        .seen()
        .into_iter()
        .rfind(|s| s.path.starts_with("/api/"))
        .unwrap();
    assert_eq!(last_api.auth.as_deref(), Some(bearer.as_str()));
}

#[test]
fn rm_asks_without_yes_and_removes_with_it() {
    let env = Env::new();
    ok(&env.run(&["pull", REPO]));
    ok(&env.run(&["pull", "org/tiny-GGUF:Q8_0"]));
    assert_eq!(list_json(&env).len(), 2);
    // No terminal and no --yes: refused, nothing removed.
    let e = fails(&env.run(&["rm", "org/tiny-GGUF:Q4_K_M"]));
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(list_json(&env).len(), 2);
    let out = env.run(&["rm", "org/tiny-GGUF:Q4_K_M", "--yes"]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("removed org/tiny-GGUF:Q4_K_M"),
        "{}",
        text(&out.stderr)
    );
    let l = list_json(&env);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["quant"], "Q8_0");
    let q4 = env.file("tiny-Q4_K_M.gguf");
    assert!(!env.repo_dir(REPO).join("blobs").join(&q4.sha256).exists());
    // The whole repo: its directory goes.
    ok(&env.run(&["rm", REPO, "-y"]));
    assert!(!env.repo_dir(REPO).exists());
    let e = fails(&env.run(&["rm", REPO, "--yes"]));
    assert!(
        e.contains("nothing to remove") && e.contains("not in the model cache"),
        "{e}"
    );
}
