//! Regression tests for the reliability probe of 2026-12 (issue 12) outside `setup`: doctor's
//! reads under `--root` stay inside the root and never hang or load a device; `--log` input is
//! capped, checked for text, and merged in linear time with a right count; `run` validates
//! `--ctx`, `--threads` and `-n` with clear errors; a closed stdout never panics. Each runs the
//! real binary (real files, FIFOs, pipes, `/dev/zero`) and takes about a second.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util;

/// Runs pigpu with a deadline (a hang is a failure, not a stuck test run).
fn run_for(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pigpu");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pigpu {:?} still running after {secs} s", cmd.get_args());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn doctor_root_reads_stay_inside_the_root_and_never_hang() {
    let t = tempfile::tempdir().unwrap();
    // A kernel log that links to a file of the host (outside the root).
    let host_file = t.path().join("host-only.log");
    fs::write(
        &host_file,
        "[ 1.0] NVRM: HOST-FILE memmgrDeterminePageSize failed\n",
    )
    .unwrap();
    let r = t.path().join("r");
    fs::create_dir_all(r.join("var/log")).unwrap();
    symlink(&host_file, r.join("var/log/kern.log")).unwrap();
    let o = run_for(
        util::pigpu()
            .args(["doctor", "--check", "kernel-log", "--root"])
            .arg(&r),
        30,
    );
    assert!(!text(&o).contains("HOST-FILE"), "{}", text(&o));

    // A link to /dev/zero is looked up inside the root (missing there), and a device inside
    // the root is not a regular file: neither is read.
    fs::remove_file(r.join("var/log/kern.log")).unwrap();
    symlink("/dev/zero", r.join("var/log/kern.log")).unwrap();
    let o = run_for(
        util::pigpu()
            .args(["doctor", "--check", "kernel-log", "--root"])
            .arg(&r),
        30,
    );
    assert!(o.status.code().is_some(), "{}", text(&o));

    // A FIFO named config.txt (nobody writes it: opening it for reading would block forever).
    let q = t.path().join("q");
    fs::create_dir_all(q.join("boot/firmware")).unwrap();
    fs::create_dir_all(q.join("proc/device-tree")).unwrap();
    fs::write(
        q.join("proc/device-tree/model"),
        "Raspberry Pi 5 Model B Rev 1.0\0",
    )
    .unwrap();
    let st = Command::new("mkfifo")
        .arg(q.join("boot/firmware/config.txt"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = run_for(util::pigpu().args(["doctor", "--root"]).arg(&q), 30);
    assert!(matches!(o.status.code(), Some(0..=1)), "{}", text(&o));
}

#[test]
fn doctor_log_counts_every_line_left_out() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("m.log");
    let mut f = std::io::BufWriter::new(fs::File::create(&log).unwrap());
    for i in 0..20_000 {
        writeln!(
            f,
            "[{:12.6}] NVRM: memmgrAllocResources_IMPL: memmgrDeterminePageSize failed, status: 0x40",
            i as f64 * 0.001
        )
        .unwrap();
    }
    drop(f);
    let o = run_for(util::pigpu().args(["doctor", "--log"]).arg(&log), 60);
    let out = text(&o);
    // Six lines shown, the other 19,994 counted (merging twice once made this "1 more").
    assert!(out.contains("… and 19994 more"), "{out}");
}

/// Probe cases 5 and 12 at size: a 200 MiB log (sparse: a hole, then text) whose last 100,000
/// lines all match. Before, the whole file was read (about 1 GB resident for 200 MB), the merge
/// was quadratic in matching lines (100,000 took 14 s on an idle machine) and the count was
/// wrong. Now only the last 32 MiB are read, in one linear pass, and every line is counted.
#[test]
fn a_huge_log_is_cut_to_its_tail_and_merged_in_linear_time() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("huge.log");
    let matching: usize = 100_000;
    let mut tail = Vec::with_capacity(33 << 20);
    let filler = "usb 1-1: new high-speed USB device number 3 using xhci-hcd ".repeat(16);
    let line = |i: usize| {
        format!(
            "[{:12.6}] NVRM: memmgrAllocResources_IMPL: memmgrDeterminePageSize failed, status: 0x40\n",
            i as f64 * 0.001
        )
    };
    let matching_bytes: usize = (0..matching).map(|i| line(i).len()).sum();
    while tail.len() + filler.len() + 1 + matching_bytes < 33 << 20 {
        tail.extend_from_slice(filler.as_bytes());
        tail.push(b'\n');
    }
    for i in 0..matching {
        tail.extend_from_slice(line(i).as_bytes());
    }
    let total: u64 = 200 << 20;
    let mut f = fs::File::create(&log).unwrap();
    f.set_len(total).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(total - tail.len() as u64)).unwrap();
    f.write_all(&tail).unwrap();
    drop(f);

    let t0 = Instant::now();
    let child = util::pigpu()
        .args(["doctor", "--log"])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let out = std::thread::spawn(move || {
        let mut child = child;
        let mut s = String::new();
        use std::io::Read;
        child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    });
    // The child's own peak memory: VmHWM of its address space, polled until it exits. (wait4's
    // ru_maxrss does not do: a child spawned with vfork and exec starts from the parent's high
    // water mark, and this test binary holds other tests' models, over 1 GiB in CI.)
    let mut status = 0;
    let mut peak_kib = 0u64;
    loop {
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        // SAFETY: polling our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "waitpid failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t0.elapsed();
    let out = out.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "{status}: {out}"
    );
    assert!(
        out.contains("is 200 MiB: only its last 32 MiB were read"),
        "{out}"
    );
    assert!(
        out.contains(&format!("… and {} more", matching - 6)),
        "{out}"
    );
    let peak_mib = peak_kib / 1024;
    assert!(peak_kib > 0, "no VmHWM read from /proc/{pid}/status");
    assert!(peak_mib < 400, "peak resident memory {peak_mib} MiB");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn endless_device_and_binary_inputs_are_refused_quickly() {
    let t = tempfile::tempdir().unwrap();
    // A device as --log: not a regular file.
    let o = run_for(util::pigpu().args(["doctor", "--log", "/dev/zero"]), 20);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));
    // Endless zeros on stdin: reported as not text after the first 64 KiB, not read on.
    let o = run_for(
        util::pigpu()
            .args(["doctor", "--log", "-"])
            .stdin(fs::File::open("/dev/zero").unwrap()),
        20,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("not text"), "{}", text(&o));
    // Random bytes: refused, not analysed at a crawl.
    let bin = t.path().join("random.bin");
    let mut bytes = vec![0u8; 4 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(&bin, &bytes).unwrap();
    let o = run_for(util::pigpu().args(["doctor", "--log"]).arg(&bin), 20);
    assert!(text(&o).contains("not text"), "{}", text(&o));
    // A device as --manifest.
    let o = run_for(
        util::pigpu().args(["setup", "--dry-run", "--manifest", "/dev/zero"]),
        20,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("manifest /dev/zero"), "{}", text(&o));
    // Endless stdin as a prompt: an error after the cap, not gigabytes of memory.
    if let Some(m) = util::test_model(util::SMOLLM) {
        let o = run_for(
            util::pigpu()
                .arg("run")
                .arg(&m)
                .args(["-n", "1"])
                .stdin(fs::File::open("/dev/zero").unwrap()),
            60,
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("longer than 64 MiB"), "{}", text(&o));
    }
}

#[test]
fn absurd_ctx_threads_and_n_are_clear_errors() {
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    for (args, want) in [
        (
            &["--ctx", "18446744073709551615"][..],
            "--ctx 18446744073709551615 is far beyond any memory",
        ),
        (&["--ctx", "100000000"][..], "for the KV cache, more than"),
        (
            &["--threads", "100000"][..],
            "--threads 100000 is more than",
        ),
        (
            &["-n", "18446744073709551615"][..],
            "lower -n or raise --ctx",
        ),
    ] {
        let o = run_for(
            util::pigpu()
                .arg("run")
                .arg(&m)
                .args(["-p", "hi", "--backend", "cpu"])
                .args(args),
            60,
        );
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}

#[test]
fn nan_epsilon_and_zero_context_in_a_model_are_named() {
    use pigpu::gguf::{GgufWriter, Value};
    use pigpu::quant::GgmlType;
    let t = tempfile::tempdir().unwrap();
    let model = |eps: f32, ctx: u32| {
        GgufWriter::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("llama.block_count", Value::U32(1))
            .kv("llama.embedding_length", Value::U32(8))
            .kv("llama.feed_forward_length", Value::U32(16))
            .kv("llama.attention.head_count", Value::U32(2))
            .kv("llama.context_length", Value::U32(ctx))
            .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(eps))
            .tensor(
                "token_embd.weight",
                &[8, 4],
                GgmlType::F32,
                vec![0; 8 * 4 * 4],
            )
            .to_bytes()
    };
    for (name, bytes, want) in [
        (
            "nan.gguf",
            model(f32::NAN, 64),
            "llama.attention.layer_norm_rms_epsilon",
        ),
        ("ctx0.gguf", model(1e-5, 0), "llama.context_length"),
    ] {
        let p = t.path().join(name);
        fs::write(&p, bytes).unwrap();
        let o = run_for(util::pigpu().arg("run").arg(&p).args(["-p", "hi"]), 30);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(want), "{name}: {}", text(&o));
    }
}

/// stdout is a pipe whose reading end is already closed, so every write gets EPIPE.
fn closed_stdout() -> Stdio {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_closed_stdout_never_panics() {
    let mut cmd = util::pigpu();
    cmd.args(["run", "--list-devices"])
        .stdout(closed_stdout())
        .stderr(Stdio::piped());
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");

    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m.toml");
    fs::write(
        &m,
        fs::read_to_string(util::root().join("tests/fixtures/setup/manifest.toml.in"))
            .unwrap()
            .replace("@BASE@", "http://127.0.0.1:9")
            .replace("@ARCH@", std::env::consts::ARCH),
    )
    .unwrap();
    let o = util::pigpu()
        .args(["setup", "--dry-run", "--root"])
        .arg(t.path())
        .arg("--manifest")
        .arg(&m)
        .stdout(closed_stdout())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
}

/// The probe's template (D6): three nested loops of 100,000 each. Before the renderer was
/// bounded, `run --chat` ran on for minutes, growing past 1 GB.
const NESTED_LOOPS: &str = "{% for i in range(100000) %}{% for j in range(100000) %}\
{% for k in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";

#[test]
fn a_chat_template_with_nested_loops_fails_fast() {
    use pigpu::gguf::Value;
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("tmpl_loop.gguf");
    util::rewrite_gguf(
        &m,
        &p,
        |md| *util::meta(md, "tokenizer.chat_template") = Value::String(NESTED_LOOPS.into()),
        |_, _| {},
    );
    let t0 = Instant::now();
    let o = run_for(
        util::pigpu()
            .arg("run")
            .arg(&p)
            .args(["--chat", "-p", "Hello", "-n", "4", "--backend", "cpu"])
            .stdin(Stdio::null()),
        30,
    );
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("tokenizer.chat_template failed to render") && text(&o).contains("fuel"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// SmolLM2 with its token list one shorter or one longer than its embedding (probe G9: ids
/// past the list were generated and printed as nothing).
#[test]
fn a_vocabulary_unlike_the_embedding_is_named() {
    use pigpu::gguf::Value;
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    for (name, delta) in [("short.gguf", -1i64), ("long.gguf", 1)] {
        let p = t.path().join(name);
        util::rewrite_gguf(
            &m,
            &p,
            |md| {
                for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type"] {
                    let Value::Array(a) = util::meta(md, key) else {
                        panic!("{key} is not an array");
                    };
                    if delta < 0 {
                        a.values.pop();
                    } else if key.ends_with("tokens") {
                        a.values.push(Value::String("<extra>".into()));
                    } else {
                        a.values.push(Value::I32(1));
                    }
                }
            },
            |_, _| {},
        );
        let n_tokens = (49152 + delta).to_string();
        for args in [
            &["run", "-p", "hi", "-n", "2"][..],
            &["bench", "-p", "4", "-n", "2", "-r", "1", "-m"][..],
        ] {
            let o = run_for(
                util::pigpu().args(args).arg(&p).args(["--backend", "cpu"]),
                60,
            );
            let out = text(&o);
            assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {out}");
            assert!(
                out.contains(&format!("the tokenizer has {n_tokens} tokens"))
                    && out.contains("embedding has 49152 rows"),
                "{name} {args:?}: {out}"
            );
        }
    }
}

/// SmolLM2 whose embedding (Q8_0, tied to the output) has a NaN scale in every block, as a
/// broken conversion might leave it: every logit is NaN. Before, `run` printed token 0 again and
/// again and `bench` reported figures (on the CPU; the Vulkan engine's device sampler picked a
/// token from NaNs unnoticed); now both stop with an error naming it, on both engines.
#[test]
fn nan_logits_are_an_error_in_run_and_bench() {
    let Some(m) = util::test_model(util::SMOLLM) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("nan.gguf");
    util::rewrite_gguf(
        &m,
        &p,
        |_| {},
        |name, data| {
            if name == "token_embd.weight" {
                // Q8_0 blocks: an f16 scale, then 32 int8 values.
                assert_eq!(data.len() % 34, 0);
                for block in data.chunks_exact_mut(34) {
                    block[..2].copy_from_slice(&0x7e00u16.to_le_bytes());
                }
            }
        },
    );
    // The Vulkan engine samples on the device: its sampler flags the NaN beside the token it
    // reads back, and the engine stops with the same error (lavapipe here).
    let backends: [&[&str]; 2] = [
        &["--backend", "cpu"],
        &["--backend", "vulkan", "--device", "llvmpipe"],
    ];
    for backend in backends {
        for args in [
            &["run", "-p", "hi", "-n", "4"][..],
            &["bench", "-p", "4", "-n", "2", "-r", "1", "-o", "json", "-m"][..],
        ] {
            let o = run_for(util::pigpu().args(args).arg(&p).args(backend), 120);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(2), "{backend:?} {args:?}: {out}");
            assert!(
                out.contains("NaN logits at position"),
                "{backend:?} {args:?}: {out}"
            );
            assert!(!out.contains("panicked"), "{backend:?} {args:?}: {out}");
        }
    }
}
