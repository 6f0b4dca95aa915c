//! A model file that shrinks while pigpu has it mapped (probe case D18, issue 12). Truncated
//! before the run, the file is a named GGUF error; truncated while `run --chat` is between
//! turns, the next turn reads a page past the new end, which raises SIGBUS. Before, that killed
//! pigpu with no word ("Bus error" from the shell, status 135); now the binary's handler names
//! the file and exits 2. The Vulkan engine holds its own copy of the weights once loaded, so
//! there a truncated file changes nothing: the next answer is the same.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engines::TINY;
use crate::util;

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Cuts the file at `path` to half its length.
fn halve(path: &Path) {
    let full = fs::metadata(path).unwrap().len();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(full / 2)
        .unwrap();
}

/// Cuts `model` to half its length under the running `child`, sends it `turn` and closes its
/// stdin, then waits for it to exit; past `limit_s` seconds it is killed and the test fails.
fn truncate_then_wait(
    child: &mut Child,
    mut stdin: ChildStdin,
    model: &Path,
    turn: &str,
    limit_s: u64,
) -> ExitStatus {
    halve(model);
    writeln!(stdin, "{turn}").unwrap();
    drop(stdin);
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > Duration::from_secs(limit_s) {
            let _ = child.kill();
            panic!("pigpu still runs {limit_s} s after its model was truncated");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_model_truncated_before_or_during_a_run_is_a_named_error() {
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("model-in-use.gguf");
    fs::copy(&m, &model).unwrap();

    // Before: the open checks every tensor against the bytes that are there.
    let short = t.path().join("short.gguf");
    fs::copy(&m, &short).unwrap();
    halve(&short);
    let o = util::pigpu()
        .arg("run")
        .arg(&short)
        .args(["-p", "hi", "-n", "1", "--backend", "cpu"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(short.to_str().unwrap()) && text(&o).contains("file has"),
        "{}",
        text(&o)
    );

    // During: one turn proves the model is loaded (mapped); then the file is cut in half and
    // the next turn runs over the weights.
    let mut child = util::pigpu()
        .arg("run")
        .arg(&model)
        .args(["--chat", "--backend", "cpu", "-n", "4", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "Hello").unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("no answer to the first turn within 60 s");
    let status = truncate_then_wait(&mut child, stdin, &model, "And again?", 60);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "pigpu died of a signal ({status}):\n{err}"
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the model file {} shrank or was rewritten while pigpu was using it",
            model.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("Bus error"),
        "{err}"
    );
}

/// Collects what `r` yields, line by line, into `into` until it ends (the thread's end).
fn collect(
    r: impl Read + Send + 'static,
    into: &Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    let into = into.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

/// The Vulkan engine copies every weight into device memory while it loads (norms and biases
/// as f32 vectors, the matrices through staging buffers), embeds tokens on the device, and
/// the tokenizer and chat template are parsed out of the file at open; so once loaded it never
/// reads the map again, and a truncated file changes nothing. (A `--backend auto` run that
/// falls back to the CPU after a GPU failure would read it: the CPU engine's case above.) On
/// the tiny shaped model (`engines::TINY`; SmolLM2 until 2026-12-06): what is read from the
/// map and when is the same on any model.
#[test]
fn the_vulkan_engine_answers_on_after_its_model_is_truncated() {
    let t = tempfile::tempdir().unwrap();
    let model = crate::engines::shaped_file(TINY.0, TINY.1, t.path());
    let full = fs::metadata(&model).unwrap().len();
    let mut child = util::pigpu()
        .arg("run")
        .arg(&model)
        .args(["--chat", "--backend", "vulkan", "--device", "llvmpipe"])
        .args(["-n", "2", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let readers = [
        collect(child.stdout.take().unwrap(), &out),
        collect(child.stderr.take().unwrap(), &err),
    ];
    let turns = || err.lock().unwrap().matches(" generated ").count();
    let mut stdin = child.stdin.take().unwrap();
    // Turn 1 on the whole file; its statistics line says it is over.
    writeln!(stdin, "Hello").unwrap();
    let t0 = Instant::now();
    while turns() < 1 {
        if t0.elapsed() > Duration::from_secs(300) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no first answer:\n{}", err.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Turn 2 asks the same from a cleared conversation: the engine is reset and runs the same
    // prompt through every layer again, so the greedy answer must be turn 1's, token for token.
    let status = truncate_then_wait(&mut child, stdin, &model, "/clear\nHello", 300);
    // The pipes close with pigpu.
    for r in readers {
        r.join().unwrap();
    }
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "pigpu died of a signal ({status}):\n{err}"
    );
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(fs::metadata(&model).unwrap().len(), full / 2);
    assert_eq!(err.matches(" generated ").count(), 2, "{err}");
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), 2, "{out:?}\n{err}");
    assert!(!answers[0].trim().is_empty(), "{out:?}");
    assert_eq!(answers[0], answers[1], "{err}");
    assert!(
        !err.contains("shrank") && !err.contains("panicked") && !err.contains("Bus error"),
        "{err}"
    );
}
