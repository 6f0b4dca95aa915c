//! Streams a planned shaped model to disk: the header first, then every tensor's data cut into
//! chunks of about 1 MiB that all threads generate and write (`pwrite`) in parallel. Each chunk's
//! random stream depends only on the seed, the tensor name and the chunk number, so the file is
//! the same byte for byte whatever the thread count. The file is written under a temporary name
//! and renamed when complete, so an interrupted write never leaves a truncated model behind.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use half::f16;

use crate::gguf::FileLayout;

use super::family::Values;
use super::fill::{random, stream_seed, Rng};
use super::Plan;

/// Bytes generated per work item, about.
const CHUNK_BYTES: u64 = 1 << 20;

/// One piece of work: rows `first_row..first_row + n_rows` of tensor `tensor`.
struct Job {
    tensor: usize,
    chunk: u64,
    first_row: u64,
    n_rows: u64,
}

fn jobs(plan: &Plan, layout: &FileLayout) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, t) in layout.tensors.iter().enumerate() {
        let rows: u64 = t.shape.iter().skip(1).product();
        let row_bytes = t.bytes / rows.max(1);
        let per = match plan.tensors[i].values {
            Values::Random { .. } => (CHUNK_BYTES / row_bytes.max(1)).max(1),
            _ => rows,
        };
        let mut first = 0;
        let mut chunk = 0;
        while first < rows {
            let n = per.min(rows - first);
            jobs.push(Job {
                tensor: i,
                chunk,
                first_row: first,
                n_rows: n,
            });
            first += n;
            chunk += 1;
        }
    }
    jobs
}

/// Fills `buf` with job `j`'s bytes.
fn generate(plan: &Plan, layout: &FileLayout, seed: u64, j: &Job, buf: &mut Vec<u8>) {
    let t = &layout.tensors[j.tensor];
    let rows: u64 = t.shape.iter().skip(1).product();
    let row_bytes = t.bytes / rows.max(1);
    buf.clear();
    buf.resize((row_bytes * j.n_rows) as usize, 0);
    let elem_bytes = |x: f32| -> Vec<u8> {
        match t.ty {
            crate::quant::GgmlType::F16 => f16::from_f32(x).to_bits().to_le_bytes().to_vec(),
            _ => x.to_le_bytes().to_vec(),
        }
    };
    match &plan.tensors[j.tensor].values {
        Values::Random { sigma } => {
            let mut rng = Rng::new(stream_seed(seed, &t.name, j.chunk));
            random(t.ty, *sigma, &mut rng, buf);
        }
        Values::Ones => {
            let one = elem_bytes(1.0);
            for c in buf.chunks_exact_mut(one.len()) {
                c.copy_from_slice(&one);
            }
        }
        Values::Exact(v) => {
            let w = elem_bytes(0.0).len();
            for (c, &x) in buf.chunks_exact_mut(w).zip(v) {
                c.copy_from_slice(&elem_bytes(x));
            }
        }
    }
}

/// Writes `plan` to `path` with `threads` threads (0: all cores).
pub fn write_file(plan: &Plan, seed: u64, path: &Path, threads: usize) -> std::io::Result<()> {
    let layout = &plan.layout;
    let file_name = path
        .file_name()
        .map_or_else(|| "shape".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let result =
        write_to(plan, layout, seed, &tmp, threads).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_to(
    plan: &Plan,
    layout: &FileLayout,
    seed: u64,
    path: &Path,
    threads: usize,
) -> std::io::Result<()> {
    let file = File::create(path)?;
    // Zeros everywhere not written below (the padding between tensors), without writing them.
    file.set_len(layout.file_len)?;
    file.write_all_at(&layout.header, 0)?;
    let jobs = jobs(plan, layout);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(j) = jobs.get(i) else { break };
                    generate(plan, layout, seed, j, &mut buf);
                    let t = &layout.tensors[j.tensor];
                    let rows: u64 = t.shape.iter().skip(1).product();
                    let at = layout.file_offset(j.tensor) + j.first_row * (t.bytes / rows.max(1));
                    if let Err(e) = file.write_all_at(&buf, at) {
                        let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert(e);
                        // Stop every thread: skip the remaining jobs.
                        next.store(jobs.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(())
}
