//! Per-op GPU timing (`pigpu run --profile`, `pigpu bench --profile`). A profiled engine replays
//! a second, "timed" recording of its decode step (`CmdBuffer::timed`: the query pool is reset inside
//! the buffer, a timestamp follows every command) and records its prompt batches the same way;
//! the normal recordings carry no queries, so decoding without `--profile` costs what it did.
//!
//! Each interval between two timestamps is one command: its time includes the drain that the
//! global barrier between commands forces anyway, so the sum of the op times is the GPU's busy
//! time for the submit. Intervals are grouped by a label that the op itself derives from what it
//! computes (`GpuOp::stamp`: e.g. `matvec q4_K 3072x3072 norm`), so new op kinds get a label
//! (their kernel's name) without changes here. Two yardsticks are measured once per device: the
//! device-to-device copy bandwidth of one large `vkCmdCopyBuffer`, and the per-stage floor (the
//! mean time of a few hundred empty one-workgroup dispatches, timed exactly like the ops).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::buffer::{Buffer, MemKind};
use super::command::{CmdBuffer, Stamp};
use super::device::Device;
use super::error::{Result, VkError};
use super::kernels::{Kernels, F_ACC, F_BIAS, F_GLU, F_NORM};
use super::ops::{beyond_matmul, GpuOp, OpKind};
use super::pipeline::DescriptorArena;

impl GpuOp {
    /// The label of this op recorded for `n_tok` tokens. Mat-vecs say their variant (`matvec`
    /// for one token, `matmul` for the mat-mat over a batch, `tiled/<tile>` for the tiled
    /// mat-mat), weight types, rows × columns of weights read and what is fused (`norm`, `glu`,
    /// `bias`, `+res`); the norm pass is `rms_norm`, the embedding `embed` (whatever its table's
    /// type). `None` for other ops: the command buffer names them by the kernel it dispatches
    /// (`attention`, `attention_prompt_…`, `rope_kv`, …), so new kernels are labelled without
    /// changes here.
    pub fn stamp(&self, n_tok: u32) -> Option<Stamp> {
        if let OpKind::RmsNorm { .. } = self.kind {
            // Either reduction's kernel (`rms_norm`, `rms_norm_sg`): one label.
            return Some(Stamp::named("rms_norm".to_string()));
        }
        if let OpKind::Embed { .. } = self.kind {
            // One kernel per table type (`embed_Q4_1`, ...): one label, as before.
            return Some(Stamp::named("embed".to_string()));
        }
        let OpKind::Matvec {
            k,
            flags,
            segs,
            tiled,
            batch_kernel,
            ..
        } = &self.kind
        else {
            return None;
        };
        let batch = n_tok > 1;
        let mut types: Vec<String> = Vec::new();
        for (_, ty, _) in segs {
            let t = ty.to_string();
            if !types.contains(&t) {
                types.push(t);
            }
        }
        let rows: u64 = segs.iter().map(|s| s.0 as u64).sum();
        let bytes: u64 = segs
            .iter()
            .map(|(r, ty, _)| ty.bytes_for(*k as u64).unwrap_or(0) * *r as u64)
            .sum();
        let variant = match tiled
            .as_ref()
            .filter(|_| beyond_matmul(batch_kernel, n_tok))
        {
            Some(t) => {
                // The output rows the tiled kernel is picked for (gate and up give one each).
                let out_rows = if flags & F_GLU != 0 {
                    segs[0].0
                } else {
                    rows as u32
                };
                format!("tiled/{}", t.pick(out_rows, n_tok).0.name)
            }
            None if batch && batch_kernel.is_some() => "matmul".to_string(),
            None => "matvec".to_string(),
        };
        let mut label = format!("{variant} {} {rows}x{k}", types.join("+"));
        for (flag, tag) in [
            (F_NORM, " norm"),
            (F_GLU, " glu"),
            (F_BIAS, " bias"),
            (F_ACC, " +res"),
        ] {
            if flags & flag != 0 {
                label.push_str(tag);
            }
        }
        Some(Stamp {
            label,
            weight_bytes: bytes,
            flops: if batch {
                2 * rows * *k as u64 * n_tok as u64
            } else {
                0
            },
        })
    }
}

/// The device's timestamp facts: nanoseconds per tick and valid bits of its compute queue.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct TimestampSupport {
    pub period_ns: f64,
    pub valid_bits: u32,
}

/// Whether the device can time commands on its queue; an error names what is missing.
pub fn timestamp_support(dev: &Device) -> Result<TimestampSupport> {
    // SAFETY: a query on the live instance about its physical device.
    let families = unsafe {
        dev.instance
            .raw
            .get_physical_device_queue_family_properties(dev.physical)
    };
    let valid_bits = families
        .get(dev.queue_family as usize)
        .map_or(0, |f| f.timestamp_valid_bits);
    let period_ns = dev.limits.timestamp_period as f64;
    if valid_bits == 0 || period_ns <= 0.0 {
        return Err(VkError::Unsupported(format!(
            "timestamp queries on {}'s compute queue (timestampValidBits {valid_bits}, \
             timestampPeriod {period_ns}); --profile needs them",
            dev.info.name
        )));
    }
    Ok(TimestampSupport {
        period_ns,
        valid_bits,
    })
}

/// The yardsticks: device memory bandwidth and the cost of one pipeline stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    /// Bytes of the calibration copy (each read once and written once).
    pub copy_bytes: u64,
    /// Device memory traffic of the copy (read + write) per second, in GB/s (best of 3).
    pub copy_gbs: f64,
    /// Empty one-workgroup dispatches timed.
    pub floor_dispatches: u32,
    /// Their mean time, in microseconds: what any op costs at least.
    pub stage_floor_us: f64,
}

/// Empty dispatches of the stage-floor measurement.
const FLOOR_DISPATCHES: u32 = 500;

/// Measures the copy bandwidth and the stage floor (a few milliseconds on a GPU; ~0.1 s on
/// lavapipe). Uses one descriptor set from `arena`.
pub fn calibrate(
    dev: &Arc<Device>,
    kernels: &Kernels,
    arena: &mut DescriptorArena,
    ts: TimestampSupport,
) -> Result<Calibration> {
    let copy_bytes: u64 = dev.choices.profile_copy_bytes;
    let src = Buffer::new(dev, copy_bytes, MemKind::Device, "the profiler's copy test")?;
    let dst = Buffer::new(dev, copy_bytes, MemKind::Device, "the profiler's copy test")?;
    let mut cmd = CmdBuffer::timed(dev, 4)?;
    cmd.begin(false)?;
    cmd.fill(&src, 0, copy_bytes, 0x3f80_0000);
    cmd.end()?;
    cmd.submit_wait()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        cmd.begin(false)?;
        cmd.copy(&src, 0, &dst, 0, copy_bytes);
        cmd.end()?;
        cmd.submit_wait()?;
        let t = cmd.times(ts.period_ns, ts.valid_bits)?;
        if let Some((_, ns)) = t.first() {
            best = best.min(*ns);
        }
    }
    drop((src, dst));
    let copy_gbs = if best.is_finite() && best > 0.0 {
        2.0 * copy_bytes as f64 / best
    } else {
        0.0
    };

    let empty = kernels.empty()?;
    let scratch = Buffer::new(dev, 16, MemKind::Device, "the profiler's empty dispatch")?;
    let set = arena.set(&empty, &[&[scratch.all()]])?;
    let mut cmd = CmdBuffer::timed(dev, FLOOR_DISPATCHES + 2)?;
    cmd.begin(false)?;
    for _ in 0..FLOOR_DISPATCHES {
        // A barrier between each two, as between the engine's ops.
        cmd.dispatch(&empty, set, &[], [1, 1, 1]);
    }
    cmd.end()?;
    cmd.submit_wait()?;
    let t = cmd.times(ts.period_ns, ts.valid_bits)?;
    // The first dispatch also pays for the pipeline's first use.
    let rest = &t[t.len().min(1)..];
    let stage_floor_us = if rest.is_empty() {
        0.0
    } else {
        rest.iter().map(|(_, ns)| ns).sum::<f64>() / rest.len() as f64 / 1e3
    };
    Ok(Calibration {
        copy_bytes,
        copy_gbs,
        floor_dispatches: FLOOR_DISPATCHES,
        stage_floor_us,
    })
}

#[derive(Debug, Clone, Default)]
struct Agg {
    count: u64,
    ns: f64,
    /// The shortest single run (0 before the first).
    min_ns: f64,
    weight_bytes: u64,
    flops: u64,
}

/// Timings of one kind of submit (decode steps or prompt batches), summed.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    submits: u64,
    tokens: u64,
    wall_ns: f64,
    untimed: u64,
    ops: HashMap<String, Agg>,
}

impl Phase {
    /// Adds one completed submit that ran `tokens` tokens in `wall_ns` (host time from submit
    /// to the end of the wait), with the command buffer's timed intervals.
    pub fn add(&mut self, tokens: u64, wall_ns: f64, times: Vec<(Stamp, f64)>, untimed: u32) {
        self.submits += 1;
        self.tokens += tokens;
        self.wall_ns += wall_ns;
        self.untimed += untimed as u64;
        for (s, ns) in times {
            let a = self.ops.entry(s.label).or_default();
            a.min_ns = if a.count == 0 { ns } else { a.min_ns.min(ns) };
            a.count += 1;
            a.ns += ns;
            a.weight_bytes += s.weight_bytes;
            a.flops += s.flops;
        }
    }

    fn report(&self, name: &'static str) -> PhaseReport {
        let tok = self.tokens.max(1) as f64;
        let total_ns: f64 = self.ops.values().map(|a| a.ns).sum();
        let mut ops: Vec<OpReport> = self
            .ops
            .iter()
            .map(|(label, a)| {
                let mean_ns = a.ns / a.count.max(1) as f64;
                OpReport {
                    label: label.clone(),
                    count: a.count,
                    per_token: a.count as f64 / tok,
                    mean_us: mean_ns / 1e3,
                    min_us: a.min_ns / 1e3,
                    us_per_token: a.ns / tok / 1e3,
                    share: if total_ns > 0.0 { a.ns / total_ns } else { 0.0 },
                    weight_gbs: (a.weight_bytes > 0 && a.ns > 0.0)
                        .then(|| a.weight_bytes as f64 / a.ns),
                    gflops: (a.flops > 0 && a.ns > 0.0).then(|| a.flops as f64 / a.ns),
                }
            })
            .collect();
        ops.sort_by(|a, b| b.us_per_token.total_cmp(&a.us_per_token));
        PhaseReport {
            phase: name,
            submits: self.submits,
            tokens: self.tokens,
            wall_us_per_token: self.wall_ns / tok / 1e3,
            gpu_us_per_token: total_ns / tok / 1e3,
            commands_per_token: self.ops.values().map(|a| a.count).sum::<u64>() as f64 / tok,
            untimed_commands: self.untimed,
            ops,
        }
    }
}

/// Everything a profiled engine has timed since the last `take`.
#[derive(Debug, Default)]
pub struct Profiler {
    pub decode: Phase,
    pub prompt: Phase,
}

impl Profiler {
    /// The report so far; the sums start again from zero.
    pub fn take(
        &mut self,
        device: &str,
        ts: TimestampSupport,
        calibration: &Calibration,
    ) -> Profile {
        let p = std::mem::take(self);
        let mut phases = Vec::new();
        if p.decode.submits > 0 {
            phases.push(p.decode.report("decode"));
        }
        if p.prompt.submits > 0 {
            phases.push(p.prompt.report("prompt"));
        }
        Profile {
            device: device.to_string(),
            timestamps: ts,
            calibration: calibration.clone(),
            phases,
        }
    }
}

/// One op kind's line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpReport {
    pub label: String,
    /// Times it ran.
    pub count: u64,
    /// Times per token.
    pub per_token: f64,
    /// Mean GPU time of one run, µs.
    pub mean_us: f64,
    /// The shortest run, µs: on a shared machine (lavapipe) the figure least inflated by the
    /// other processes, for comparing small ops whose mean is mostly scheduling noise.
    pub min_us: f64,
    /// GPU time per token, µs (`per_token` × `mean_us`).
    pub us_per_token: f64,
    /// Fraction of the summed op time.
    pub share: f64,
    /// Weight bytes read per second, GB/s (mat-vec and mat-mat).
    pub weight_gbs: Option<f64>,
    /// Floating-point operations per second, GFLOP/s (mat-mat).
    pub gflops: Option<f64>,
}

/// One phase's profile: times per token and per op kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseReport {
    /// `decode` (one token per submit) or `prompt` (batches).
    pub phase: &'static str,
    /// Submits timed.
    pub submits: u64,
    /// Tokens processed in them.
    pub tokens: u64,
    /// Host time per token from submit to the end of the wait, µs.
    pub wall_us_per_token: f64,
    /// Sum of the timed commands per token, µs (≤ wall).
    pub gpu_us_per_token: f64,
    /// Timed commands per token (× the stage floor: the part of the token no kernel can save).
    pub commands_per_token: f64,
    /// Commands that ran untimed (more than the query pool holds; 0 normally).
    pub untimed_commands: u64,
    /// Op kinds, most time first.
    pub ops: Vec<OpReport>,
}

/// The `--profile` report (the `profile` object of `--json` / `-o json` output).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    /// Device name.
    pub device: String,
    /// Timestamp period and valid bits of the compute queue.
    pub timestamps: TimestampSupport,
    /// Measured memory bandwidth and stage cost.
    pub calibration: Calibration,
    /// Decode and prompt phases, each when it ran.
    pub phases: Vec<PhaseReport>,
}

impl Profile {
    /// The table for stderr.
    pub fn text(&self) -> String {
        let c = &self.calibration;
        let mut s = format!(
            "profile: {}: copy bandwidth {:.1} GB/s (read + write of {} MiB), stage floor {:.2} µs \
             ({} empty dispatches), timestamp period {} ns\n",
            self.device,
            c.copy_gbs,
            c.copy_bytes >> 20,
            c.stage_floor_us,
            c.floor_dispatches,
            self.timestamps.period_ns
        );
        if self.phases.is_empty() {
            s.push_str("profile: nothing was timed\n");
        }
        for p in &self.phases {
            let pct = if p.wall_us_per_token > 0.0 {
                100.0 * p.gpu_us_per_token / p.wall_us_per_token
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "profile: {}: {} tokens in {} submits; per token {:.1} µs of ops, {:.1} µs wall \
                 ({pct:.0} %){}",
                p.phase,
                p.tokens,
                p.submits,
                p.gpu_us_per_token,
                p.wall_us_per_token,
                if p.untimed_commands > 0 {
                    format!("; {} commands untimed", p.untimed_commands)
                } else {
                    String::new()
                }
            );
            let floor = p.commands_per_token * c.stage_floor_us;
            let _ = writeln!(
                s,
                "profile: {}: {:.1} commands per token × stage floor = {floor:.1} µs ({:.0} % of \
                 the ops' time)",
                p.phase,
                p.commands_per_token,
                if p.gpu_us_per_token > 0.0 {
                    100.0 * floor / p.gpu_us_per_token
                } else {
                    0.0
                }
            );
            let _ = writeln!(
                s,
                "  {:<40} {:>7} {:>10} {:>10} {:>6} {:>8} {:>6} {:>8} {:>10}",
                "op", "n/tok", "mean µs", "µs/tok", "share", "GB/s", "% bw", "GFLOP/s", "min µs"
            );
            for o in &p.ops {
                let gbs = o.weight_gbs.map_or(String::new(), |g| format!("{g:.1}"));
                let bw = match o.weight_gbs {
                    Some(g) if c.copy_gbs > 0.0 => format!("{:.0}", 100.0 * g / c.copy_gbs),
                    _ => String::new(),
                };
                let fl = o.gflops.map_or(String::new(), |g| format!("{g:.1}"));
                let _ = writeln!(
                    s,
                    "  {:<40} {:>7.2} {:>10.1} {:>10.1} {:>5.1}% {:>8} {:>6} {:>8} {:>10.1}",
                    o.label,
                    o.per_token,
                    o.mean_us,
                    o.us_per_token,
                    100.0 * o.share,
                    gbs,
                    bw,
                    fl,
                    o.min_us
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_is_the_shortest_run_of_each_op() {
        let mut p = Phase::default();
        let s = |l: &str| Stamp::named(l.to_string());
        p.add(1, 10.0, vec![(s("rope_kv"), 3000.0), (s("copy"), 500.0)], 0);
        p.add(1, 10.0, vec![(s("rope_kv"), 1000.0), (s("copy"), 700.0)], 0);
        p.add(1, 10.0, vec![(s("rope_kv"), 2000.0)], 0);
        let r = p.report("decode");
        let op = |l: &str| r.ops.iter().find(|o| o.label == l).unwrap();
        assert_eq!(op("rope_kv").min_us, 1.0);
        assert_eq!(op("rope_kv").mean_us, 2.0);
        assert_eq!(op("copy").min_us, 0.5);
        assert!(Profile {
            device: "d".into(),
            timestamps: TimestampSupport {
                period_ns: 1.0,
                valid_bits: 64
            },
            calibration: Calibration {
                copy_bytes: 0,
                copy_gbs: 0.0,
                floor_dispatches: 0,
                stage_floor_us: 0.0,
            },
            phases: vec![r],
        }
        .text()
        .contains("min µs"));
    }
}
