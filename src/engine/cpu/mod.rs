//! The CPU engine: the reference every other engine is tested against and the Pi's fallback
//! when no GPU works. Weights stay in the memory map and are read packed by the kernels;
//! resident memory beyond the map is the KV cache (sized by `n_ctx`) plus per-batch scratch.
//!
//! The forward pass reads top to bottom in data order (llama2.c style): embed (× scale) → per
//! layer (RMS norm → Q, K, V (+bias) → per-head Q/K norm → RoPE → KV cache → attention (within
//! the sliding window on such layers) → output projection (→ post-norm) + residual → RMS norm →
//! gate, up → SwiGLU or GeGLU → down (→ post-norm) + residual) → final norm → logits. The optional
//! steps are the architectures' differences (config.rs).

mod batch;
pub mod kernels;
mod matmul;
pub(crate) mod ops;
pub(crate) mod pool;

use std::sync::Arc;
use std::time::Instant;

use crate::engine::{EngineError, EngineResult as Result};

use self::kernels::Isa;
use self::matmul::{matmul, matmul_many, Acts, Mat};
use self::ops::{KvBuf, KvKernels, Rope};
use self::pool::Pool;
use super::{Engine, SamplingParams, Stats};
use crate::model::{sampler, Activation, Model, ModelError};

/// How to build a CPU engine.
#[derive(Debug, Clone)]
pub struct CpuOptions {
    /// Context length: the KV cache holds this many positions.
    pub n_ctx: usize,
    /// Threads in all (including the caller). 0 = one per available core.
    pub threads: usize,
    /// Store keys and values as f16 (as llama.cpp does by default) rather than f32.
    pub kv_f16: bool,
    /// Force an instruction set (tests); `None` = the best this CPU has.
    pub isa: Option<Isa>,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            n_ctx: 2048,
            threads: 0,
            kv_f16: true,
            isa: None,
        }
    }
}

/// The weights of one layer in kernel-ready form; norms and biases copied as f32 (they are
/// tiny).
struct Layer {
    attn_norm: Vec<f32>,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    /// Per-head Q/K norm weights, [head_dim] (qwen3, gemma3).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: Mat,
    /// Post-attention and post-FFN norms, [n_embd] (gemma3).
    attn_post_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Mat,
    up: Mat,
    down: Mat,
    ffn_post_norm: Option<Vec<f32>>,
}

/// The CPU engine: runs a model on the host's cores with the SIMD kernels `Isa::detect` picks.
pub struct CpuEngine {
    model: Arc<Model>,
    isa: Isa,
    pool: Pool,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Mat,
    rope_freqs: Option<Vec<f32>>,
    kv_kernels: KvKernels,
    n_ctx: usize,
    /// Per layer: keys and values, `n_ctx × kv_dim` each.
    k_cache: Vec<KvBuf>,
    v_cache: Vec<KvBuf>,
    n_past: usize,
    /// The token `step` returned last, not yet fed.
    unfed: Option<u32>,
    /// Every token fed or sampled since `reset` (for the repetition penalty).
    history: Vec<u32>,
    /// Logits of the last token fed; empty when none is pending.
    logits: Vec<f32>,
    stats: Stats,
}

impl std::fmt::Debug for CpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl CpuEngine {
    /// Prepares `model` for the CPU: checks every weight type has a kernel, allocates the KV
    /// cache for `opts.n_ctx` positions and starts the threads.
    pub fn new(model: Arc<Model>, opts: &CpuOptions) -> std::result::Result<CpuEngine, ModelError> {
        let c = &model.config;
        let isa = opts.isa.unwrap_or_else(Isa::detect);
        let w = &model.weights;
        let vec = |w: &crate::model::Weight| model.vector_f32(w);
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in &w.layers {
            layers.push(Layer {
                attn_norm: vec(&l.attn_norm),
                wq: Mat::new(&l.attn_q, isa)?,
                wk: Mat::new(&l.attn_k, isa)?,
                wv: Mat::new(&l.attn_v, isa)?,
                bq: l.attn_q_bias.as_ref().map(vec),
                bk: l.attn_k_bias.as_ref().map(vec),
                bv: l.attn_v_bias.as_ref().map(vec),
                q_norm: l.attn_q_norm.as_ref().map(vec),
                k_norm: l.attn_k_norm.as_ref().map(vec),
                wo: Mat::new(&l.attn_output, isa)?,
                attn_post_norm: l.attn_post_norm.as_ref().map(vec),
                ffn_norm: vec(&l.ffn_norm),
                gate: Mat::new(&l.ffn_gate, isa)?,
                up: Mat::new(&l.ffn_up, isa)?,
                down: Mat::new(&l.ffn_down, isa)?,
                ffn_post_norm: l.ffn_post_norm.as_ref().map(vec),
            });
        }
        let output = Mat::new(&w.output, isa)?;
        // The embedding is read one row at a time, dequantized.
        if kernels::kernel(w.token_embd.ty, Isa::Portable).is_none() {
            return Err(ModelError::UnsupportedType {
                name: w.token_embd.name.clone(),
                ty: w.token_embd.ty,
                supported: kernels::SUPPORTED.into(),
            });
        }
        let n_ctx = opts.n_ctx.max(1);
        let kv_len = n_ctx * c.kv_dim();
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        Ok(CpuEngine {
            isa,
            pool: Pool::new(threads),
            layers,
            output_norm: vec(&w.output_norm),
            output,
            rope_freqs: w.rope_freqs.as_ref().map(vec),
            kv_kernels: kv_kernels(isa),
            n_ctx,
            k_cache: (0..c.n_layer)
                .map(|_| KvBuf::new(opts.kv_f16, kv_len))
                .collect(),
            v_cache: (0..c.n_layer)
                .map(|_| KvBuf::new(opts.kv_f16, kv_len))
                .collect(),
            n_past: 0,
            unfed: None,
            history: Vec::new(),
            logits: Vec::new(),
            stats: Stats::default(),
            model,
        })
    }

    fn check_tokens(&self, tokens: &[u32], extra: usize) -> Result<()> {
        let n_vocab = self.model.config.n_vocab;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::BadInput(format!(
                "token id {t} is outside the vocabulary (0..{n_vocab})"
            )));
        }
        let need = self.n_past + extra + tokens.len();
        if need > self.n_ctx {
            return Err(EngineError::ContextFull(format!(
                "{need} tokens do not fit in the context of {} (already {} in the cache); use a larger --ctx",
                self.n_ctx,
                self.n_past + extra
            )));
        }
        Ok(())
    }

    /// Feeds `tokens` (after any unfed sampled token); returns the logits of every fed token
    /// when `all`, else leaves only the last one's pending.
    fn feed(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        let extra = usize::from(self.unfed.is_some());
        self.check_tokens(tokens, extra)?;
        let mut batch = Vec::with_capacity(tokens.len() + extra);
        batch.extend(self.unfed.take());
        batch.extend_from_slice(tokens);
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let start = Instant::now();
        let out = self.forward(&batch, all);
        self.history.extend_from_slice(tokens);
        self.stats.tokens += batch.len() as u64;
        self.stats.host_ns += start.elapsed().as_nanos() as u64;
        let n_vocab = self.model.config.n_vocab;
        if all {
            self.logits = out[out.len() - n_vocab..].to_vec();
            // Drop the logits of the previously sampled token: the caller asked for `tokens`.
            Ok(out[extra * n_vocab..].to_vec())
        } else {
            self.logits = out;
            Ok(Vec::new())
        }
    }

    /// Runs the model over `tokens` at positions `n_past..` and appends them to the KV cache.
    /// Returns the logits of every token (`all`) or of the last one.
    fn forward(&mut self, tokens: &[u32], all: bool) -> Vec<f32> {
        // The cache moves into a one-sequence pass and back (moving a `Vec` copies no data).
        let mut seq = [Seq {
            k: std::mem::take(&mut self.k_cache),
            v: std::mem::take(&mut self.v_cache),
            pos: self.n_past,
            rows: tokens.len(),
        }];
        let logits = self.forward_seqs(tokens, &mut seq, all);
        let [s] = seq;
        self.k_cache = s.k;
        self.v_cache = s.v;
        self.n_past += tokens.len();
        logits
    }

    /// The forward pass over one or more sequences at once: `tokens` holds each sequence's rows
    /// in turn (`seqs[i].rows` tokens at positions `seqs[i].pos..`, written into `seqs[i]`'s
    /// cache). A prompt is one sequence of many rows; `serve`'s batched decode is many sequences
    /// of one row each. Every matrix product runs once over all rows, and each row's result is
    /// the same whatever else is in the pass. Returns the logits of every row (`all`) or of
    /// each sequence's last row, `rows × n_vocab`.
    fn forward_seqs(&self, tokens: &[u32], seqs: &mut [Seq], all: bool) -> Vec<f32> {
        let model = self.model.clone();
        let c = &model.config;
        let (n, d) = (tokens.len(), c.n_embd);
        debug_assert_eq!(n, seqs.iter().map(|s| s.rows).sum::<usize>());

        // x: n × d, the residual stream.
        let mut x = vec![0.0f32; n * d];
        let embd = &model.weights.token_embd;
        let embd_data = model.data(embd);
        let rb = embd.row_bytes();
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &embd_data[tok as usize * rb..(tok as usize + 1) * rb];
            kernels::dequantize_row(embd.ty, row, &mut x[t * d..(t + 1) * d]);
        }
        if c.embd_scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= c.embd_scale);
        }
        let ropes: Vec<Ropes> = seqs.iter().map(|s| self.ropes(s.pos, s.rows)).collect();
        let mut s = Scratch::new(c, n);
        for (li, l) in self.layers.iter().enumerate() {
            self.layer(li, l, &mut x, &mut s, seqs, &ropes);
        }

        // Output: all rows, or each sequence's last.
        let last: Vec<usize> = if all {
            (0..n).collect()
        } else {
            seqs.iter()
                .scan(0, |end, s| {
                    *end += s.rows;
                    Some(*end - 1)
                })
                .collect()
        };
        let mut normed = vec![0.0f32; last.len() * d];
        for (o, &t) in last.iter().enumerate() {
            ops::rms_norm(
                &x[t * d..(t + 1) * d],
                &self.output_norm,
                c.rms_eps,
                &mut normed[o * d..(o + 1) * d],
            );
        }
        s.acts.set(&normed, last.len(), d);
        let mut logits = vec![0.0f32; last.len() * c.n_vocab];
        matmul(&model, &self.output, &mut s.acts, &mut logits, &self.pool);
        logits
    }

    /// The rotation tables for `rows` positions from `pos`: one per distinct (base, scale) among
    /// the layers (gemma3 has two: global and sliding).
    fn ropes(&self, pos: usize, rows: usize) -> Ropes {
        let c = &self.model.config;
        let mut ropes: Ropes = Vec::new();
        for il in 0..c.n_layer {
            if let Some(bs) = c.layer_rope(il) {
                if !ropes.iter().any(|(k, _)| *k == bs) {
                    let r = Rope::new(
                        c.n_rot,
                        c.rope_style,
                        bs.0,
                        bs.1,
                        self.rope_freqs.as_deref(),
                        pos,
                        rows,
                    );
                    ropes.push((bs, r));
                }
            }
        }
        ropes
    }

    /// Layer `li` over the rows of `x`: each sequence's rows rotate by its own positions
    /// (`ropes[i]`), write its own KV cache and attend over it.
    fn layer(
        &self,
        li: usize,
        l: &Layer,
        x: &mut [f32],
        s: &mut Scratch,
        seqs: &mut [Seq],
        ropes: &[Ropes],
    ) {
        let model = &self.model;
        let c = &model.config;
        let (n, d, qd, kvd, hd) = (s.n, c.n_embd, c.q_dim(), c.kv_dim(), c.head_dim);
        let pool = &self.pool;

        // Attention block.
        for t in 0..n {
            ops::rms_norm(
                &x[t * d..(t + 1) * d],
                &l.attn_norm,
                c.rms_eps,
                &mut s.xn[t * d..(t + 1) * d],
            );
        }
        s.acts.set(&s.xn, n, d);
        matmul_many(
            model,
            &mut [(&l.wq, &mut s.q), (&l.wk, &mut s.k), (&l.wv, &mut s.v)],
            &mut s.acts,
            pool,
        );
        for (buf, bias, w) in [
            (&mut s.q, &l.bq, qd),
            (&mut s.k, &l.bk, kvd),
            (&mut s.v, &l.bv, kvd),
        ] {
            if let Some(b) = bias {
                for row in buf.chunks_exact_mut(w) {
                    row.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                }
            }
        }
        if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
            let mut tmp = vec![0.0f32; hd];
            for (buf, w) in [(&mut s.q, qn), (&mut s.k, kn)] {
                for head in buf.chunks_exact_mut(hd) {
                    ops::rms_norm(head, w, c.rms_eps, &mut tmp);
                    head.copy_from_slice(&tmp);
                }
            }
        }
        let bs = c.layer_rope(li);
        let mut row = 0;
        for (seq, ropes) in seqs.iter_mut().zip(ropes) {
            let rope = bs.and_then(|bs| ropes.iter().find(|(k, _)| *k == bs).map(|(_, r)| r));
            for t in 0..seq.rows {
                let (q, k) = (
                    &mut s.q[row * qd..(row + 1) * qd],
                    &mut s.k[row * kvd..(row + 1) * kvd],
                );
                if let Some(rope) = rope {
                    rope.apply(q, hd, t);
                    rope.apply(k, hd, t);
                }
                let at = (seq.pos + t) * kvd;
                seq.k[li].write(at, k);
                seq.v[li].write(at, &s.v[row * kvd..(row + 1) * kvd]);
                row += 1;
            }
        }
        self.attention(li, &s.q, &mut s.att, seqs);
        s.acts.set(&s.att, n, qd);
        matmul(model, &l.wo, &mut s.acts, &mut s.proj, pool);
        post_norm(&mut s.proj, l.attn_post_norm.as_deref(), d, c.rms_eps);
        x.iter_mut().zip(&s.proj).for_each(|(a, &b)| *a += b);

        // Feed-forward block.
        for t in 0..n {
            ops::rms_norm(
                &x[t * d..(t + 1) * d],
                &l.ffn_norm,
                c.rms_eps,
                &mut s.xn[t * d..(t + 1) * d],
            );
        }
        s.acts.set(&s.xn, n, d);
        matmul_many(
            model,
            &mut [(&l.gate, &mut s.gate), (&l.up, &mut s.up)],
            &mut s.acts,
            pool,
        );
        self.glu(&mut s.gate, &s.up);
        s.acts.set(&s.gate, n, c.n_ff);
        matmul(model, &l.down, &mut s.acts, &mut s.proj, pool);
        post_norm(&mut s.proj, l.ffn_post_norm.as_deref(), d, c.rms_eps);
        x.iter_mut().zip(&s.proj).for_each(|(a, &b)| *a += b);
    }

    /// `gate = act(gate) · up` (SwiGLU or GeGLU), in chunks over the threads (an exp or tanh per
    /// element: for a batch of prompt tokens this is too much work for one thread while the
    /// others wait).
    fn glu(&self, gate: &mut [f32], up: &[f32]) {
        const CHUNK: usize = 4096;
        let f = match self.model.config.act {
            Activation::Silu => ops::swiglu,
            Activation::Gelu => ops::geglu,
        };
        if gate.len() <= CHUNK {
            f(gate, up);
            return;
        }
        let len = gate.len();
        let gp = AttPtr(gate.as_mut_ptr());
        self.pool.run(len.div_ceil(CHUNK), &|c| {
            let r = c * CHUNK..((c + 1) * CHUNK).min(len);
            // SAFETY: chunk c owns the disjoint range `r` of `gate` (inside its length), and
            // `run` returns only when every chunk is done.
            let g = unsafe { std::slice::from_raw_parts_mut(gp.get().add(r.start), r.len()) };
            f(g, &up[r]);
        });
    }

    /// Causal attention of layer `li` for every row: each sequence's rows over its own cache
    /// (within the sliding window on such layers), in chunks of (row, head) pairs shared among
    /// the threads.
    fn attention(&self, li: usize, q: &[f32], att: &mut [f32], seqs: &[Seq]) {
        let c = &self.model.config;
        let (qd, kvd, hd) = (c.q_dim(), c.kv_dim(), c.head_dim);
        let group = c.n_head / c.n_head_kv;
        let scale = c.attn_scale;
        let window = c.layer_window(li);
        let kk = self.kv_kernels;
        // Row r belongs to sequence rows[r].0 at position rows[r].1.
        let rows: Vec<(usize, usize)> = seqs
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (s.pos..s.pos + s.rows).map(move |p| (i, p)))
            .collect();
        let jobs = rows.len() * c.n_head;
        let outp = AttPtr(att.as_mut_ptr());
        let longest = seqs.iter().map(|s| s.pos + s.rows).max().unwrap_or(1);
        let size = pool::chunk_size(jobs, self.pool.threads(), 4, 1);
        self.pool.run(jobs.div_ceil(size), &|chunk| {
            let mut scores = vec![0.0f32; longest];
            for job in chunk * size..((chunk + 1) * size).min(jobs) {
                let (t, h) = (job / c.n_head, job % c.n_head);
                let (si, p) = rows[t];
                let qrow = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
                // SAFETY: each (t, h) pair owns the disjoint slice `att[t·qd + h·hd ..][..hd]`,
                // and `run` returns only when every chunk is done, before `att` is read.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(outp.get().add(t * qd + h * hd), hd) };
                ops::attend(
                    qrow,
                    &seqs[si].k[li],
                    &seqs[si].v[li],
                    kvd,
                    (h / group) * hd,
                    window.map_or(0, |w| (p + 1).saturating_sub(w)),
                    p,
                    scale,
                    &mut scores,
                    out,
                    kk,
                );
            }
        });
    }
}

/// One sequence's part of a forward pass: its KV cache (moved out of its engine for the pass)
/// and the positions `pos..pos + rows` its rows go to.
struct Seq {
    k: Vec<KvBuf>,
    v: Vec<KvBuf>,
    pos: usize,
    rows: usize,
}

/// Rotation tables of one sequence's rows, by (base, scale).
type Ropes = Vec<((f32, f32), Rope)>;

/// The per-pass buffers of the layers, for `n` rows.
struct Scratch {
    n: usize,
    xn: Vec<f32>,   // normed input, n × d
    q: Vec<f32>,    // n × q_dim
    k: Vec<f32>,    // n × kv_dim
    v: Vec<f32>,    // n × kv_dim
    att: Vec<f32>,  // attention output, n × q_dim
    proj: Vec<f32>, // projections back to d, n × d
    gate: Vec<f32>, // n × n_ff
    up: Vec<f32>,   // n × n_ff
    acts: Acts,
}

impl Scratch {
    fn new(c: &crate::model::Config, n: usize) -> Scratch {
        let (d, qd, kvd) = (c.n_embd, c.q_dim(), c.kv_dim());
        Scratch {
            n,
            xn: vec![0.0; n * d],
            q: vec![0.0; n * qd],
            k: vec![0.0; n * kvd],
            v: vec![0.0; n * kvd],
            att: vec![0.0; n * qd],
            proj: vec![0.0; n * d],
            gate: vec![0.0; n * c.n_ff],
            up: vec![0.0; n * c.n_ff],
            acts: Acts::default(),
        }
    }
}

/// `y ← rms_norm(y) · w` for each `d`-wide row, when the layer has such a norm (gemma3's
/// post-attention and post-FFN norms).
fn post_norm(y: &mut [f32], w: Option<&[f32]>, d: usize, eps: f32) {
    let Some(w) = w else { return };
    let mut tmp = vec![0.0f32; d];
    for row in y.chunks_exact_mut(d) {
        ops::rms_norm(row, w, eps, &mut tmp);
        row.copy_from_slice(&tmp);
    }
}

/// A pointer to a buffer whose disjoint parts the pool's chunks write (attention heads,
/// SwiGLU ranges).
#[derive(Clone, Copy)]
struct AttPtr(*mut f32);
// SAFETY: chunks write disjoint slices; see `attention` and `swiglu`.
unsafe impl Send for AttPtr {}
// SAFETY: as above.
unsafe impl Sync for AttPtr {}

impl AttPtr {
    /// (A method, so closures capture the whole `Sync` wrapper, not the raw field.)
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn kv_kernels(isa: Isa) -> KvKernels {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => kernels::avx2::kv_kernels(),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => kernels::neon::kv_kernels(),
        _ => KvKernels {
            dot: ops::dot_f16_portable,
            axpy: ops::axpy_f16_portable,
        },
    }
}

impl Engine for CpuEngine {
    fn kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::Cpu
    }

    fn describe(&self) -> String {
        format!(
            "cpu ({}, {} thread{})",
            self.isa.name(),
            self.pool.threads(),
            if self.pool.threads() == 1 { "" } else { "s" }
        )
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn n_past(&self) -> usize {
        self.n_past
    }
    fn reset(&mut self) {
        self.n_past = 0;
        self.unfed = None;
        self.history.clear();
        self.logits.clear();
    }
    /// Each row of a pass is computed alone, so the logits after feeding the rest are exactly
    /// those of feeding the whole prompt.
    fn keep_prefix(&mut self, n: usize) -> Result<usize> {
        let n = n.min(self.n_past);
        self.n_past = n;
        self.unfed = None;
        self.history.truncate(n);
        self.logits.clear();
        Ok(n)
    }
    fn prefill(&mut self, tokens: &[u32]) -> Result<()> {
        self.feed(tokens, false).map(|_| ())
    }
    fn step(&mut self, params: &SamplingParams, u: f32) -> Result<u32> {
        if self.unfed.is_some() {
            self.feed(&[], false)?;
        }
        if self.logits.is_empty() {
            return Err(EngineError::BadInput(
                "step called before any token was fed (prefill the prompt first)".into(),
            ));
        }
        // NaN logits (broken weights or hyper-parameters) would quietly sample token 0 again
        // and again; say what happened instead.
        if self.logits.iter().any(|x| x.is_nan()) {
            return Err(EngineError::NonFinite {
                position: self.n_past,
                what: "NaN",
            });
        }
        let start = Instant::now();
        let mut l = self.logits.clone();
        let tok = sampler::sample(&mut l, &self.history, params, u);
        self.history.push(tok);
        self.unfed = Some(tok);
        self.stats.host_ns += start.elapsed().as_nanos() as u64;
        Ok(tok)
    }
    fn logits(&mut self) -> Result<Vec<f32>> {
        if self.logits.is_empty() {
            return Err(EngineError::BadInput(
                "no logits pending: feed tokens first".into(),
            ));
        }
        Ok(self.logits.clone())
    }
    fn prefill_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.feed(tokens, true)
    }
    fn stats(&self) -> Stats {
        self.stats.clone()
    }
    fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }
    fn as_cpu_mut(&mut self) -> Option<&mut CpuEngine> {
        Some(self)
    }
}
