//! Kernel tests on a real Vulkan implementation (lavapipe in CI; `PIGPU_TEST_DEVICE` picks
//! another), with the Khronos validation layer on: every test fails on any validation error.
//! References are plain CPU code over `crate::quant::dequantize`.

mod attention;
mod device;
mod kernels;
mod limits;
mod matmul;
mod norm;
mod rope_split;
mod sampler;
mod shapes;
mod tiled;
mod upload;

use std::sync::Arc;

use super::attention::AttnScratch;
use super::buffer::{f32_bytes, u32_bytes, Buffer, MemKind};
use super::choices::MATMUL_NT;
use super::command::CmdBuffer;
use super::device::Device;
use super::kernels::{Kernels, STATE_WORDS};
use super::ops::{GpuOp, OpBuilder, OpKind};
use super::pipeline::DescriptorArena;
use super::upload::{download, Uploader};

/// Device `sel` with validation on; the pipeline cache where the environment puts it (shaders
/// compile once per machine, not once per test run).
pub fn test_tuning(sel: &str) -> super::Tuning {
    super::Tuning {
        device: Some(sel.to_string()),
        validation: true,
        ..super::Tuning::from_lookup(|n| std::env::var(n).ok()).expect("PIGPU_* variables")
    }
}

/// A device with validation on, kernels, a descriptor arena and an uploader.
pub struct Gpu {
    pub dev: Arc<Device>,
    pub kernels: Kernels,
    pub arena: DescriptorArena,
    pub up: Uploader,
    /// Products over normed rows (`check_fused`) take the norm pass instead of the fused norm.
    pub norm_pass: bool,
}

impl Gpu {
    pub fn new() -> Gpu {
        Self::open(None)
    }

    /// With the mat-vec kernels on the shared-memory tree (`lane` = 0), lane-per-row (1) or
    /// subgroup (2, decode only; its mat-mat is the tree path) path.
    pub fn with_lane(lane: u32) -> Gpu {
        Self::open(Some(lane))
    }

    /// As `with_lane`, the `matvec.comp` paths reading weights through texel buffers (`true`)
    /// or storage buffers (`false`, as GPUs do), whatever the device's default.
    pub fn with_lane_weights(lane: u32, texel: bool) -> Gpu {
        Self::open_with(Some(lane), Some(texel))
    }

    /// The paths and weight reads the mat-vec tests cover: (lane, texel) for the tree and lane
    /// paths with each way of reading weights, and the subgroup path (storage only).
    pub const PATHS: [(u32, bool); 5] = [(0, false), (0, true), (1, false), (1, true), (2, false)];

    /// With explicit mat-vec / mat-mat shapes (workgroup size, rows per workgroup, lane).
    pub fn open_shapes(matvec: [u32; 3], matmul: [u32; 3]) -> Gpu {
        let mut g = Self::open(None);
        g.kernels = Kernels::with_shapes(&g.dev, matvec, matmul).unwrap();
        g
    }

    /// With prompt batches of more than 8 tokens on the tiled mat-mat (whatever the device).
    pub fn tiled() -> Gpu {
        let g = Self::open(None);
        g.kernels.set_prompt_tiled(true);
        g
    }

    fn open(lane: Option<u32>) -> Gpu {
        Self::open_with(lane, None)
    }

    fn open_with(lane: Option<u32>, texel: Option<bool>) -> Gpu {
        let sel = std::env::var("PIGPU_TEST_DEVICE").unwrap_or_else(|_| "llvmpipe".into());
        let mut tuning = test_tuning(&sel);
        if texel.is_some() {
            tuning.texel_weights = texel;
        }
        if matches!(lane, Some(0) | Some(2)) {
            // The GPUs' tokens per mat-mat workgroup with their shapes; the lane path keeps
            // the device's (16 on lavapipe).
            tuning.matmul_nt = Some(MATMUL_NT);
        }
        let dev = Device::open(&tuning)
            .unwrap_or_else(|e| panic!("opening Vulkan device '{sel}' with validation: {e}"));
        let kernels = match lane {
            None => Kernels::new(&dev).unwrap(),
            // The shapes `Kernels::new` picks for each path.
            Some(0) => Kernels::with_shapes(&dev, [32, 4, 0], [32, 2, 0]).unwrap(),
            Some(2) => Kernels::with_shapes(&dev, [128, 2, 2], [32, 2, 0]).unwrap(),
            Some(_) => Kernels::with_shapes(&dev, [32, 8, 1], [32, 8, 1]).unwrap(),
        };
        if lane.is_some() {
            kernels.set_prompt_tiled(false);
        }
        Gpu {
            kernels,
            arena: DescriptorArena::new(&dev, 64, 512).unwrap(),
            up: Uploader::new(&dev, 1 << 20).unwrap(),
            norm_pass: false,
            dev,
        }
    }

    pub fn ops(&mut self) -> OpBuilder<'_> {
        OpBuilder {
            kernels: &self.kernels,
            arena: &mut self.arena,
        }
    }

    pub fn buf(&mut self, data: &[u8]) -> Buffer {
        let mut b =
            Buffer::new(&self.dev, data.len() as u64, MemKind::Device, "test buffer").unwrap();
        self.up.upload(&mut b, 0, data).unwrap();
        self.up.finish().unwrap();
        b
    }

    pub fn buf_f32(&mut self, v: &[f32]) -> Buffer {
        self.buf(f32_bytes(v))
    }

    pub fn buf_u32(&mut self, v: &[u32]) -> Buffer {
        self.buf(u32_bytes(v))
    }

    /// The state buffer of a batch whose first token sits at position `pos`.
    pub fn state_at(&mut self, pos: usize) -> Buffer {
        let mut state = vec![0u32; STATE_WORDS];
        state[1] = pos as u32;
        self.buf_u32(&state)
    }

    /// A KV cache of `n_ctx` rows of `kv_dim` random values (K drawn first, then V), in f16 on
    /// the device as the engine keeps it, and rounded the same way for the reference.
    pub fn kv_cache(&mut self, rng: &mut Rng, n_ctx: usize, kv_dim: usize) -> KvCache {
        let mut draw = || -> Vec<f32> {
            let v = rng.vec(n_ctx * kv_dim, 1.0);
            v.into_iter().map(f16_round).collect()
        };
        let (k, v) = (draw(), draw());
        KvCache {
            kbuf: self.buf(&f16_pack(&k)),
            vbuf: self.buf(&f16_pack(&v)),
            k,
            v,
        }
    }

    /// The attention op of `kind` (`attention_kind` / `attention_kind_window`): queries from
    /// `q`, keys and values from `cache`, the batch's position from `state`, output to `out`;
    /// `scratch` picks the split kernel.
    pub fn attention_op(
        &mut self,
        state: &Buffer,
        q: &Buffer,
        cache: &KvCache,
        out: &Buffer,
        scratch: Option<AttnScratch>,
        kind: OpKind,
    ) -> GpuOp {
        self.ops()
            .attention(
                state.all(),
                q.all(),
                cache.kbuf.all(),
                cache.vbuf.all(),
                out.all(),
                scratch,
                kind,
            )
            .unwrap()
    }

    /// The first `n` 32-bit words of `b`.
    fn read_words(&self, b: &Buffer, n: usize) -> Vec<[u8; 4]> {
        let bytes = download(&self.dev, b, 0, n as u64 * 4).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| c.try_into().unwrap())
            .collect()
    }

    pub fn read_f32(&self, b: &Buffer, n: usize) -> Vec<f32> {
        let words = self.read_words(b, n);
        words.into_iter().map(f32::from_le_bytes).collect()
    }

    pub fn read_u32(&self, b: &Buffer, n: usize) -> Vec<u32> {
        let words = self.read_words(b, n);
        words.into_iter().map(u32::from_le_bytes).collect()
    }

    /// Records `ops` (each with its batch size) into `cmd` and runs it to completion.
    fn submit(cmd: &mut CmdBuffer, ops: &[(&GpuOp, u32)]) {
        Self::submit_at(cmd, ops, None);
    }

    /// `submit` as a batch after `n_past` cached positions (`CmdBuffer::n_past`).
    fn submit_at(cmd: &mut CmdBuffer, ops: &[(&GpuOp, u32)], n_past: Option<u32>) {
        cmd.begin(false).unwrap();
        cmd.n_past = n_past;
        for (op, n) in ops {
            op.record(cmd, *n);
        }
        cmd.end().unwrap();
        cmd.submit_wait().unwrap();
    }

    /// Records `ops` (each with its batch size) into one command buffer and runs it.
    pub fn run(&self, ops: &[(&GpuOp, u32)]) {
        Self::submit(&mut CmdBuffer::new(&self.dev).unwrap(), ops);
    }

    /// `run` as a prompt batch after `n_past` cached positions, the depth by which the prompt
    /// attention splits its KV range; returns the recording's labels (a timed command buffer).
    pub fn run_at(&self, ops: &[(&GpuOp, u32)], n_past: u32) -> Vec<String> {
        let mut cmd = CmdBuffer::timed(&self.dev, 4 * ops.len() as u32 + 1).unwrap();
        Self::submit_at(&mut cmd, ops, Some(n_past));
        let ts = super::profile::timestamp_support(&self.dev).unwrap();
        let t = cmd.times(ts.period_ns, ts.valid_bits).unwrap();
        t.into_iter().map(|(s, _)| s.label).collect()
    }

    /// Like `run`, but with a timestamp after each dispatch: the GPU nanoseconds of each (an op
    /// that records two dispatches, like the split attention's combine pass, gives two).
    pub fn run_timed(&self, ops: &[(&GpuOp, u32)]) -> Vec<f64> {
        let ts = super::profile::timestamp_support(&self.dev).unwrap();
        // Room for two dispatches per op (the split attention's split and combine passes).
        let mut cmd = CmdBuffer::timed(&self.dev, 2 * ops.len() as u32 + 1).unwrap();
        Self::submit(&mut cmd, ops);
        let t = cmd.times(ts.period_ns, ts.valid_bits).unwrap();
        assert!(
            t.len() >= ops.len(),
            "{} times for {} ops",
            t.len(),
            ops.len()
        );
        t.into_iter().map(|(_, ns)| ns).collect()
    }

    /// Fails the test on any validation error so far.
    pub fn check(&self) {
        let errs = self.dev.take_validation_errors();
        assert!(
            errs.is_empty(),
            "Vulkan validation errors:\n{}",
            errs.join("\n")
        );
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check();
        }
    }
}

/// A KV cache on the device (`kbuf`, `vbuf`: f16) and the same values for the reference.
pub struct KvCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub kbuf: Buffer,
    pub vbuf: Buffer,
}

/// `v` as the device stores it in f16, back in f32.
pub fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// `v` as f16 bytes (little-endian), the KV cache's layout.
pub fn f16_pack(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_bits().to_le_bytes())
        .collect()
}

/// Plain causal attention over `(n_head, n_kv, head_dim)`: no sliding window, scale
/// 1/sqrt(head_dim); the op builder picks the kernel (one-row, split or prompt).
pub fn attention_kind(heads: (usize, usize, usize)) -> OpKind {
    attention_kind_window(heads, 0)
}

/// `attention_kind` over the last `window` positions only (0: no window).
pub fn attention_kind_window((n_head, n_kv, d): (usize, usize, usize), window: usize) -> OpKind {
    OpKind::Attention {
        n_head: n_head as u32,
        n_kv: n_kv as u32,
        head_dim: d as u32,
        scale: 1.0 / (d as f32).sqrt(),
        window: window as u32,
        prompt: None,
        split: None,
    }
}

/// The reference for one token: softmax(q·K / sqrt(d)) · V over cache positions 0..n for every
/// query head (`q`: n_head × d; `k`, `v`: rows of n_kv × d; query head h reads KV head
/// h / (n_head / n_kv)), in f64.
pub fn attention_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (n_head, n_kv, d): (usize, usize, usize),
    n: usize,
) -> Vec<f64> {
    let kvd = n_kv * d;
    let mut out = vec![0f64; n_head * d];
    for h in 0..n_head {
        let kvh = h / (n_head / n_kv);
        let qh = &q[h * d..(h + 1) * d];
        let scores: Vec<f64> = (0..n)
            .map(|p| {
                let kr = &k[p * kvd + kvh * d..p * kvd + (kvh + 1) * d];
                qh.iter()
                    .zip(kr)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    / (d as f64).sqrt()
            })
            .collect();
        let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
        let z: f64 = e.iter().sum();
        for i in 0..d {
            out[h * d + i] = e
                .iter()
                .enumerate()
                .map(|(p, w)| w * v[p * kvd + kvh * d + i] as f64)
                .sum::<f64>()
                / z;
        }
    }
    out
}

/// Checks a batch's attention output `got` (tokens of n_head × d) against `attention_ref`:
/// token t of the batch sits at position `pos0 + t` and sees the cache `(k, v)` up to there;
/// each element within `tol`, failing as "`what` t= h= i=".
pub fn assert_attention(
    what: &str,
    got: &[f32],
    q: &[f32],
    (k, v): (&[f32], &[f32]),
    heads: (usize, usize, usize),
    pos0: usize,
    tol: f64,
) {
    let (n_head, _, d) = heads;
    let qd = n_head * d;
    for t in 0..got.len() / qd {
        let want = attention_ref(&q[t * qd..(t + 1) * qd], k, v, heads, pos0 + t + 1);
        for (j, want) in want.iter().enumerate() {
            let got = got[t * qd + j] as f64;
            let (h, i) = (j / d, j % d);
            assert!(
                (got - want).abs() < tol,
                "{what} t={t} h={h} i={i}: {got} vs {want}"
            );
        }
    }
}

/// Test data from the sampler's seeded generator (the same SplitMix64 the host uses).
pub struct Rng(crate::model::sampler::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(crate::model::sampler::Rng::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        self.0.next_f32()
    }
    /// Uniform in [-a, a).
    pub fn sym(&mut self, a: f32) -> f32 {
        (self.f32() * 2.0 - 1.0) * a
    }
    pub fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.sym(a)).collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
