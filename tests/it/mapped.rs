//! A model file that shrinks while pigpu has it mapped (probe case D18, issue 12). Truncated
//! before the run, the file is a named GGUF error; truncated while `run --chat` is between
//! turns, the next turn reads a page past the new end, which raises SIGBUS. Before, that killed
//! pigpu with no word ("Bus error" from the shell, status 135); now the binary's handler names
//! the file and exits 2.

use std::fs;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util;

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_model_truncated_before_or_during_a_run_is_a_named_error() {
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("model-in-use.gguf");
    fs::copy(&m, &model).unwrap();
    let full = fs::metadata(&model).unwrap().len();

    // Before: the open checks every tensor against the bytes that are there.
    let short = t.path().join("short.gguf");
    fs::copy(&m, &short).unwrap();
    fs::File::options()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(full / 2)
        .unwrap();
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
    fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_len(full / 2)
        .unwrap();
    writeln!(stdin, "And again?").unwrap();
    drop(stdin);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("pigpu still runs 60 s after its model was truncated");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
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
