//! Decoding several sequences in one pass over the weights. Each of several CPU engines over the
//! same model feeds the token its `step` last returned, and every matrix product runs once over
//! all of those tokens: decode is bound by reading the weights, so S sequences cost little more
//! than one. Per token only the position (RoPE), the KV cache written and read, and the
//! attention differ. `pigpu serve --parallel N` batches its busy slots this way.
//!
//! `forward_seqs` mirrors `CpuEngine::forward` step for step (same kernels, same order per row),
//! so a sequence decoded in a batch gets exactly the logits it would get alone.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};

use super::matmul::{matmul, matmul_many, Acts};
use super::ops::{self, KvBuf, Rope};
use super::{kernels, pool, AttPtr, CpuEngine};

/// One sequence's part of a batched pass: its KV cache (moved out of its engine for the pass)
/// and the position its token goes to.
struct Seq {
    k: Vec<KvBuf>,
    v: Vec<KvBuf>,
    pos: usize,
}

impl CpuEngine {
    /// Feeds the pending sampled token of each engine in `engines` that has one, in one forward
    /// pass run by the first such engine's threads, leaving each one's logits pending for its
    /// next `step`. The engines must share one model. Fails, changing nothing, if a context is
    /// full or the models differ.
    pub fn feed_pending_batch(engines: &mut [&mut CpuEngine]) -> Result<()> {
        let idx: Vec<usize> = (0..engines.len())
            .filter(|&i| engines[i].unfed.is_some())
            .collect();
        match idx.len() {
            0 => return Ok(()),
            1 => return Ok(engines[idx[0]].feed(&[], false).map(|_| ())?),
            _ => {}
        }
        let lead = idx[0];
        // The batched pass has the llama/qwen2 layer only: the other architectures' extra steps
        // (Q/K norms, post-norms, embedding scale, sliding windows, per-layer RoPE) run through
        // each engine's own forward pass, one sequence at a time.
        let c = &engines[lead].model.config;
        let plain = !c.qk_norm
            && !c.post_norms
            && c.embd_scale == 1.0
            && c.swa_window == 0
            && c.rope_layers.iter().all(|&r| r)
            && c.act == crate::model::Activation::Silu;
        if !plain {
            for &i in &idx {
                engines[i].feed(&[], false)?;
            }
            return Ok(());
        }
        for &i in &idx {
            let e = &engines[i];
            if !Arc::ptr_eq(&e.model, &engines[lead].model) {
                bail!(
                    "batched decode needs engines over one shared model (engine {i} has another)"
                );
            }
            if e.n_past + 1 > e.n_ctx {
                bail!(
                    "engine {i}: the pending token does not fit in the context of {} (raise --ctx)",
                    e.n_ctx
                );
            }
        }
        let start = Instant::now();
        let mut tokens = Vec::with_capacity(idx.len());
        let mut seqs = Vec::with_capacity(idx.len());
        for &i in &idx {
            let e = &mut *engines[i];
            tokens.extend(e.unfed.take());
            seqs.push(Seq {
                k: std::mem::take(&mut e.k_cache),
                v: std::mem::take(&mut e.v_cache),
                pos: e.n_past,
            });
        }
        let logits = engines[lead].forward_seqs(&tokens, &mut seqs);
        let n_vocab = engines[lead].model.config.n_vocab;
        let ns = start.elapsed().as_nanos() as u64 / idx.len() as u64;
        for (j, (&i, s)) in idx.iter().zip(seqs).enumerate() {
            let e = &mut *engines[i];
            e.k_cache = s.k;
            e.v_cache = s.v;
            e.n_past += 1;
            e.logits = logits[j * n_vocab..(j + 1) * n_vocab].to_vec();
            e.stats.tokens += 1;
            e.stats.host_ns += ns;
        }
        Ok(())
    }

    /// One token per sequence (`tokens[t]` at `seqs[t].pos`, written into `seqs[t]`'s cache);
    /// returns every token's logits, `tokens.len() × n_vocab`.
    fn forward_seqs(&self, tokens: &[u32], seqs: &mut [Seq]) -> Vec<f32> {
        let model = self.model.clone();
        let c = &model.config;
        let (n, d, qd, kvd, hd) = (tokens.len(), c.n_embd, c.q_dim(), c.kv_dim(), c.head_dim);
        let pool = &self.pool;

        // x: n × d, the residual stream (one row per sequence).
        let mut x = vec![0.0f32; n * d];
        let embd = &model.weights.token_embd;
        let embd_data = model.data(embd);
        let rb = embd.row_bytes();
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &embd_data[tok as usize * rb..(tok as usize + 1) * rb];
            kernels::dequantize_row(embd.ty, row, &mut x[t * d..(t + 1) * d]);
        }
        // One rotation table per sequence: each is at its own position.
        let ropes: Vec<Rope> = seqs
            .iter()
            .map(|s| {
                Rope::new(
                    c.n_rot,
                    c.rope_style,
                    c.rope_freq_base,
                    c.rope_freq_scale,
                    self.rope_freqs.as_deref(),
                    s.pos,
                    1,
                )
            })
            .collect();

        let mut xn = vec![0.0f32; n * d]; // normed input, n × d
        let mut q = vec![0.0f32; n * qd]; // n × q_dim
        let mut k = vec![0.0f32; n * kvd]; // n × kv_dim
        let mut v = vec![0.0f32; n * kvd];
        let mut att = vec![0.0f32; n * qd]; // attention output, n × q_dim
        let mut proj = vec![0.0f32; n * d]; // projections back to d, n × d
        let mut gate = vec![0.0f32; n * c.n_ff]; // n × n_ff
        let mut up = vec![0.0f32; n * c.n_ff];
        let mut acts = Acts::default();

        for (li, l) in self.layers.iter().enumerate() {
            for t in 0..n {
                ops::rms_norm(
                    &x[t * d..(t + 1) * d],
                    &l.attn_norm,
                    c.rms_eps,
                    &mut xn[t * d..(t + 1) * d],
                );
            }
            acts.set(&xn, n, d);
            matmul_many(
                &model,
                &mut [(&l.wq, &mut q), (&l.wk, &mut k), (&l.wv, &mut v)],
                &mut acts,
                pool,
            );
            for (buf, bias, w) in [
                (&mut q, &l.bq, qd),
                (&mut k, &l.bk, kvd),
                (&mut v, &l.bv, kvd),
            ] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(w) {
                        row.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                    }
                }
            }
            for (t, s) in seqs.iter_mut().enumerate() {
                ropes[t].apply(&mut q[t * qd..(t + 1) * qd], hd, 0);
                ropes[t].apply(&mut k[t * kvd..(t + 1) * kvd], hd, 0);
                s.k[li].write(s.pos * kvd, &k[t * kvd..(t + 1) * kvd]);
                s.v[li].write(s.pos * kvd, &v[t * kvd..(t + 1) * kvd]);
            }
            self.attention_seqs(li, &q, &mut att, seqs);
            acts.set(&att, n, qd);
            matmul(&model, &l.wo, &mut acts, &mut proj, pool);
            x.iter_mut().zip(&proj).for_each(|(a, &b)| *a += b);

            for t in 0..n {
                ops::rms_norm(
                    &x[t * d..(t + 1) * d],
                    &l.ffn_norm,
                    c.rms_eps,
                    &mut xn[t * d..(t + 1) * d],
                );
            }
            acts.set(&xn, n, d);
            matmul_many(
                &model,
                &mut [(&l.gate, &mut gate), (&l.up, &mut up)],
                &mut acts,
                pool,
            );
            self.glu(&mut gate, &up);
            acts.set(&gate, n, c.n_ff);
            matmul(&model, &l.down, &mut acts, &mut proj, pool);
            x.iter_mut().zip(&proj).for_each(|(a, &b)| *a += b);
        }

        let mut normed = vec![0.0f32; n * d];
        for t in 0..n {
            ops::rms_norm(
                &x[t * d..(t + 1) * d],
                &self.output_norm,
                c.rms_eps,
                &mut normed[t * d..(t + 1) * d],
            );
        }
        acts.set(&normed, n, d);
        let mut logits = vec![0.0f32; n * c.n_vocab];
        matmul(&model, &self.output, &mut acts, &mut logits, pool);
        logits
    }

    /// Attention of each sequence's one new token over its own cache, (sequence, head) pairs
    /// shared among the threads.
    fn attention_seqs(&self, li: usize, q: &[f32], att: &mut [f32], seqs: &[Seq]) {
        let c = &self.model.config;
        let (qd, kvd, hd) = (c.q_dim(), c.kv_dim(), c.head_dim);
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let kk = self.kv_kernels;
        let jobs = seqs.len() * c.n_head;
        let outp = AttPtr(att.as_mut_ptr());
        let longest = seqs.iter().map(|s| s.pos + 1).max().unwrap_or(1);
        let size = pool::chunk_size(jobs, self.pool.threads(), 4, 1);
        self.pool.run(jobs.div_ceil(size), &|chunk| {
            let mut scores = vec![0.0f32; longest];
            for job in chunk * size..((chunk + 1) * size).min(jobs) {
                let (t, h) = (job / c.n_head, job % c.n_head);
                let s = &seqs[t];
                let qrow = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
                // SAFETY: each (t, h) pair owns the disjoint slice `att[t·qd + h·hd ..][..hd]`,
                // and `run` returns only when every chunk is done, before `att` is read.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(outp.get().add(t * qd + h * hd), hd) };
                ops::attend(
                    qrow,
                    &s.k[li],
                    &s.v[li],
                    kvd,
                    (h / group) * hd,
                    0,
                    s.pos,
                    scale,
                    &mut scores,
                    out,
                    kk,
                );
            }
        });
    }
}
