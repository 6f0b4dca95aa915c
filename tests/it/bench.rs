//! `pigpu bench`: the output lines up with llama-bench's, and the command runs on a real model.

use pigpu::bench::report::{markdown, BenchResult};

fn row(test: &str, avg: f64, sd: f64) -> BenchResult {
    BenchResult {
        build_commit: "933414c0b".into(),
        build_number: 7293,
        model_filename: "tinyllama-1.1b-1t-openorca.Q4_K_M.gguf".into(),
        model_type: "llama 1B Q4_K - Medium".into(),
        // 636.18 MiB and 1.10 B, as in the fixture.
        model_size: (636.18 * 1024.0 * 1024.0) as u64,
        model_n_params: 1_100_048_384,
        n_batch: 512,
        n_threads: 4,
        n_gpu_layers: 99,
        n_prompt: 0,
        n_gen: 0,
        n_depth: 0,
        test: test.into(),
        test_time: String::new(),
        avg_ns: 0,
        stddev_ns: 0,
        avg_ts: avg,
        stddev_ts: sd,
        samples_ns: vec![],
        samples_ts: vec![],
        backend: "Vulkan".into(),
        device: String::new(),
        driver: String::new(),
        unit: None,
        stats: None,
        profile: None,
    }
}

#[test]
fn markdown_matches_a_real_llama_bench_table() {
    let fixture = std::fs::read_to_string(
        crate::util::root().join("tests/fixtures/bench/llama-bench-vulkan-rtx3060-cm5.txt"),
    )
    .unwrap();
    let table: Vec<&str> = fixture.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 6, "fixture table");
    let ours = markdown(&[
        row("pp512", 6744.18, 179.28),
        row("pp4096", 3981.80, 0.91),
        row("tg128", 279.05, 0.37),
        row("pp4096+tg128", 2416.39, 0.14),
    ]);
    let ours: Vec<&str> = ours.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(ours, table);
    let build = fixture.lines().find(|l| l.starts_with("build:")).unwrap();
    assert!(markdown(&[row("tg128", 1.0, 0.0)]).contains(build));
}

/// Runs `pigpu bench -m SMOLLM ARGS`, checks that it succeeded (showing its stderr if not) and
/// returns its stdout; `None` (the test skips) when the model was not fetched.
fn bench_smollm(args: &[&str]) -> Option<Vec<u8>> {
    let m = crate::util::test_model(crate::util::SMOLLM)?;
    let mut all = vec!["bench", "-m", m.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = crate::util::run(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// The rows of `bench -o json` output (which must be one complete JSON array) and their `test`
/// names, in order.
fn json_rows(stdout: &[u8]) -> (Vec<serde_json::Value>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("complete, valid JSON");
    let serde_json::Value::Array(rows) = v else {
        panic!("not a JSON array of rows: {v}")
    };
    let tests = rows
        .iter()
        .map(|r| r["test"].as_str().expect("a test name").to_string())
        .collect();
    (rows, tests)
}

#[test]
fn json_output_on_a_real_model_has_llama_bench_fields() {
    let Some(stdout) = bench_smollm(&[
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "-t",
        "2",
        "--backend",
        "cpu",
        "-o",
        "json",
    ]) else {
        return;
    };
    let (rows, tests) = json_rows(&stdout);
    assert_eq!(tests, ["load", "pp16", "tg4", "e2e4"]);
    for r in &rows {
        for field in [
            "model_filename",
            "model_type",
            "model_size",
            "model_n_params",
            "n_prompt",
            "n_gen",
            "n_depth",
            "avg_ns",
            "stddev_ns",
            "avg_ts",
            "stddev_ts",
            "samples_ns",
            "samples_ts",
            "test_time",
            "backend",
            "device",
            "driver",
            "n_threads",
        ] {
            assert!(r.get(field).is_some(), "row {} lacks {field}", r["test"]);
        }
        assert_eq!(r["model_type"], "llama 135M Q4_1");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
    }
    let pp = &rows[1];
    assert_eq!(pp["samples_ts"].as_array().unwrap().len(), 2);
    assert_eq!(
        (pp["n_prompt"].as_u64(), pp["n_gen"].as_u64()),
        (Some(16), Some(0))
    );
    // Generation rows carry the engine's per-token counters.
    assert!(rows[2]["stats"]["readback_bytes"].as_f64().is_some());
}

/// Runs `pigpu bench ARGS`, expects exit 2, no panic, nothing on stdout, and a message on
/// stderr containing every one of `needles`.
fn expect_error(args: &[&str], needles: &[&str]) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let out = crate::util::run(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed results");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let missing = ["-m", "/nonexistent.gguf", "-p", "8", "-n", "0", "-r", "1"];
    expect_error(&missing, &["/nonexistent.gguf", "No such file"]);
    expect_error(&["-m", "x.gguf", "-pg", "12"], &["PP,TG"]);
    // Checked before the model is opened, so any path will do.
    expect_error(
        &["-m", "x.gguf", "-p", "0", "-n", "0"],
        &["nothing to measure"],
    );
    expect_error(&["-m", "x.gguf", "-r", "0"], &["-r must be at least 1"]);
    // An absurd -r would run until killed, printing nothing.
    expect_error(
        &["-m", "x.gguf", "-r", "18446744073709551615"],
        &["-r 18446744073709551615 is more than 10000 repetitions"],
    );
    expect_error(&["-m", "x.gguf", "-b", "0"], &["-b", "at least 1"]);
    expect_error(
        &["-m", "x.gguf", "-o", "xml"],
        &["'xml'", "md", "json", "csv"],
    );
    expect_error(&["-m", "x.gguf", "-p", "sixty"], &["'sixty'", "--n-prompt"]);
    expect_error(&["-p", "8"], &["--model"]);
}

#[test]
fn a_missing_gpu_or_an_overlong_test_is_named_in_the_error() {
    let Some(m) = crate::util::test_model(crate::util::SMOLLM) else {
        return;
    };
    let m = m.to_str().unwrap();
    let args = ["-m", m, "-p", "8", "-n", "0", "-r", "1"];
    let mut with_device = args.to_vec();
    with_device.extend(["--backend", "vulkan", "--device", "nosuchgpu"]);
    expect_error(&with_device, &["vulkan", "nosuchgpu"]);
    // SmolLM2 was trained for 8192 tokens of context.
    let too_long = ["-m", m, "-p", "4", "-pg", "9000,8", "-n", "0", "-r", "1"];
    expect_error(
        &too_long,
        &["pp9000+tg8", "9008", "8192", "llama.context_length"],
    );
    // Counts near 2^64 do not wrap round to a small context (before: a panic for -pg, and
    // "--ctx 1 is too small" for -d).
    let max = "18446744073709551615";
    let pg = format!("{max},2");
    for extra in [
        &["-pg", pg.as_str(), "-p", "0", "-n", "0"][..],
        &["-d", max, "-p", "1", "-n", "0"][..],
        &["-n", max, "-p", "0"][..],
    ] {
        let mut a = vec!["-m", m, "-r", "1"];
        a.extend_from_slice(extra);
        expect_error(&a, &[max, "8192", "llama.context_length"]);
    }
}

#[test]
fn help_has_examples_and_says_what_ctrl_c_does() {
    let out = crate::util::run(&["bench", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:\n  pigpu bench -m model.gguf"),
        "{help}"
    );
    assert!(help.contains("Ctrl-C") && help.contains("130"), "{help}");
}

#[test]
fn short_tests_leave_room_for_the_end_to_end_row() {
    // pp4 and tg2 need a context of 5 tokens; the e2e row's real prompt alone is longer, so
    // the context must be sized for it too (this run used to fail with "do not fit").
    let Some(stdout) = bench_smollm(&[
        "-p",
        "4",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "2",
        "--backend",
        "cpu",
        "-o",
        "jsonl",
    ]) else {
        return;
    };
    let tests: Vec<String> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON object per line");
            v["test"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tests, ["load", "pp4", "tg2", "e2e2"]);
}

/// Starts a long `pigpu bench` run, waits (on its stderr progress, not a fixed sleep) until the
/// first prompt test has finished, sends SIGINT as Ctrl-C would, and returns the exit status,
/// stdout, and the names of the rows stderr reported as finished.
fn interrupted_bench(model: &str, format: &str) -> (std::process::ExitStatus, String, Vec<String>) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    // pp8 and pp16 take well under a second each on an idle machine; the tg4000 warm-up takes a
    // minute even there, so the interrupt always lands inside a test.
    let mut child = crate::util::pigpu()
        .args([
            "bench",
            "-m",
            model,
            "-p",
            "8,16",
            "-n",
            "4000",
            "-r",
            "3",
            "-t",
            "2",
            "--backend",
            "cpu",
            "-o",
            format,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pigpu");
    let mut stdout = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });

    // Generous limits: the machine running the tests may be a loaded 2-core box.
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("bench: pp8: ");
                log.push(line);
                if done {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no 'bench: pp8:' progress line; stderr so far:\n{}",
                    log.join("\n")
                );
            }
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("send SIGINT");

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pigpu bench did not stop within 300 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_thread.join().unwrap();
    log.extend(rx.iter());
    let log = log.join("\n");
    assert!(log.contains("interrupted"), "stderr:\n{log}");
    // `bench: NAME: MEAN ± SD UNIT` lines are the finished rows.
    let finished: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("bench: "))
        .filter(|l| l.contains(" ± "))
        .map(|l| l.split(": ").next().unwrap().to_string())
        .collect();
    (status, stdout, finished)
}

#[test]
fn ctrl_c_prints_the_finished_rows_and_exits_130() {
    let Some(m) = crate::util::test_model(crate::util::SMOLLM) else {
        return;
    };
    let m = m.to_str().unwrap();

    let (status, stdout, finished) = interrupted_bench(m, "json");
    assert_eq!(status.code(), Some(130), "stdout:\n{stdout}");
    assert_eq!(finished[..2], ["load", "pp8"], "{finished:?}");
    // The interrupt came during tg4000 (or, on a very slow machine, pp16): that test and the
    // end-to-end row after it never finished.
    assert!(!finished.iter().any(|t| t == "e2e4000"), "{finished:?}");
    let (rows, tests) = json_rows(stdout.as_bytes());
    assert_eq!(tests, finished);
    // pp8 ran all its repetitions before the interrupt.
    assert_eq!(rows[1]["samples_ts"].as_array().unwrap().len(), 3);
    assert!(rows[1]["avg_ts"].as_f64().unwrap() > 0.0);

    let (status, stdout, finished) = interrupted_bench(m, "md");
    assert_eq!(status.code(), Some(130), "stdout:\n{stdout}");
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + finished.len(), "{stdout}");
    assert!(table[0].contains(" test |"), "{}", table[0]);
    for (line, test) in table[2..].iter().zip(&finished) {
        assert!(line.starts_with("| llama 135M Q4_1"), "{line}");
        assert!(line.contains(&format!(" {test} |")), "{line} lacks {test}");
    }
    assert!(stdout.contains("\nbuild: "), "{stdout}");
}

#[test]
fn vulkan_rows_on_lavapipe_carry_driver_upload_and_per_token_stats() {
    // lavapipe (Mesa's CPU Vulkan) is slow, so the smallest run that has every row kind.
    let Some(stdout) = bench_smollm(&[
        "-p",
        "4",
        "-n",
        "2",
        "-r",
        "1",
        "--backend",
        "vulkan",
        "--device",
        "llvmpipe",
        "-o",
        "json",
    ]) else {
        return;
    };
    let (rows, tests) = json_rows(&stdout);
    assert_eq!(tests, ["load", "upload", "pp4", "tg2", "e2e2"]);
    for r in &rows {
        assert_eq!(r["backend"], "Vulkan");
        assert_eq!(r["n_gpu_layers"], 99);
        assert!(r["device"].as_str().unwrap().contains("llvmpipe"), "{r}");
        // The driver as the device reports it, e.g. "llvmpipe Mesa 22.3.6 (LLVM 15.0.6), Vulkan 1.3.230".
        let driver = r["driver"].as_str().unwrap();
        assert!(
            driver.contains("Mesa") && driver.contains("Vulkan 1."),
            "{driver}"
        );
    }
    assert_eq!(rows[1]["unit"], "GB/s");
    assert!(rows[1]["avg_ts"].as_f64().unwrap() > 0.0);
    // Generation on the GPU engine: at least one dispatch and one submit per token.
    let stats = &rows[3]["stats"];
    assert!(stats["dispatches"].as_f64().unwrap() >= 1.0, "{stats}");
    assert!(stats["submits"].as_f64().unwrap() >= 1.0, "{stats}");
    assert!(stats["readback_bytes"].as_f64().unwrap() > 0.0, "{stats}");
}

/// Reads CSV text with a real CSV reader: the header and every record, each checked to be as
/// long as the header (the reader itself rejects ragged rows unless told otherwise).
fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| {
            rec.expect("a well-formed CSV record")
                .iter()
                .map(String::from)
                .collect()
        })
        .collect();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "row {row:?}");
    }
    (header, rows)
}

/// Rows of every kind (tokens/s, a unit, engine counters, none) share one column layout that
/// starts with llama-bench's own header, read from real llama-bench output.
#[test]
fn csv_rows_of_every_kind_have_llama_bench_columns() {
    use pigpu::bench::report::{csv as to_csv, StatsPerToken};
    let fixture = std::fs::read_to_string(
        crate::util::root().join("tests/fixtures/bench/llama-bench-cpu-smollm.csv"),
    )
    .unwrap();
    let (llama_header, llama_rows) = read_csv(&fixture);
    assert_eq!(llama_rows.len(), 2);
    let mut load = row("load", 812.5, 3.0);
    load.unit = Some("MB/s".into());
    let mut tg = row("tg128", 279.05, 0.37);
    tg.n_gen = 128;
    tg.samples_ts = vec![279.0, 279.1];
    tg.stats = Some(StatsPerToken {
        dispatches: 200.0,
        submits: 1.0,
        command_buffers_recorded: 0.0,
        descriptor_updates: 0.0,
        readback_bytes: 4.0,
        upload_bytes: 4.0,
        host_us: 12.5,
    });
    let mut quoted = row("pp512", 6744.18, 179.28);
    quoted.model_filename = "dir, with \"quotes\"/m.gguf".into();
    let text = to_csv(&[load, tg, quoted]);
    let (header, rows) = read_csv(&text);
    assert_eq!(header[..llama_header.len()], llama_header[..]);
    assert_eq!(rows.len(), 3);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows[0][col("unit")], "MB/s");
    assert_eq!(rows[1][col("n_gen")], "128");
    assert_eq!(rows[1][col("stats_dispatches")], "200.000000");
    assert_eq!(rows[1][col("samples_ts")], "279.000000 279.100000");
    assert_eq!(
        rows[2][col("model_filename")],
        "dir, with \"quotes\"/m.gguf"
    );
    assert_eq!(rows[2][col("avg_ts")], "6744.180000");
    assert_eq!(rows[0][col("stats_dispatches")], "");
}

/// `pigpu bench -o csv` on the real model: parsed by a CSV reader, llama-bench's columns hold
/// the values llama-bench would put there.
#[test]
fn csv_output_on_a_real_model_reads_back_with_a_csv_reader() {
    let Some(stdout) = bench_smollm(&[
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1",
        "--backend",
        "cpu",
        "-o",
        "csv",
    ]) else {
        return;
    };
    let (header, rows) = read_csv(&String::from_utf8(stdout).unwrap());
    assert_eq!(
        header[..pigpu::bench::report::LLAMA_BENCH_CSV_COLUMNS.len()],
        pigpu::bench::report::LLAMA_BENCH_CSV_COLUMNS
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let tests: Vec<&str> = rows.iter().map(|r| r[col("test")].as_str()).collect();
    assert_eq!(tests, ["load", "pp8", "tg2", "e2e2"]);
    let pp = &rows[1];
    assert_eq!(
        (pp[col("n_prompt")].as_str(), pp[col("n_gen")].as_str()),
        ("8", "0")
    );
    assert_eq!(pp[col("backends")], "CPU");
    assert_eq!(pp[col("n_threads")], "1");
    assert!(pp[col("model_filename")].ends_with(crate::util::SMOLLM));
    assert!(pp[col("avg_ts")].parse::<f64>().unwrap() > 0.0);
    assert!(pp[col("avg_ns")].parse::<u64>().unwrap() > 0);
}
