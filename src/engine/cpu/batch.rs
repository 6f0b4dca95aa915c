//! Decoding several sequences in one pass over the weights. Each of several CPU engines over the
//! same model feeds the token its `step` last returned, and every matrix product runs once over
//! all of those tokens: decode is bound by reading the weights, so S sequences cost little more
//! than one. Per token only the position (RoPE), the KV cache written and read, and the
//! attention differ. `pigpu serve --parallel N` batches its busy slots this way.
//!
//! The pass is the engine's own `forward_seqs` (the one a prompt goes through, as one sequence of
//! many rows), so a sequence decoded in a batch gets exactly the logits it would get alone, on
//! every architecture the engine runs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{CpuEngine, Seq};

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
                rows: 1,
            });
        }
        let logits = engines[lead].forward_seqs(&tokens, &mut seqs, false);
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
}
