//! `VulkanEngine`: the `Engine` on a Vulkan device. Decoding is GPU-resident: one command buffer,
//! recorded once at load, runs the model on the token sampled last step (the embedding lookup
//! reads it from device memory, where the sampler wrote it), samples the next token on the device
//! and copies its id out; per step the host writes 32 bytes of sampling parameters, submits
//! once, and reads back 8 bytes: the token id and the sampler's verdict on the logits (a NaN or
//! infinite logit is the typed error `EngineError::NonFinite`, naming the position). The step is
//! recorded three times, with each of the sampler's selections (for every sampler, greedy-only,
//! top-k-bounded: `kernels::SampleMode`), and the parameters pick which one a step submits. With profiling on (`set_profiling`), a
//! second, timed recording of the decode step replaces it and prompt batches are recorded with
//! timestamps.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::attention::Splits;
use super::buffer::u32_bytes;
use super::choices::Choices;
use super::command::CmdBuffer;
use super::device::Device;
use super::error::{to_engine, Result as VkResult};
use super::graph::{self, Acts, Graph};
use super::kernels::{sample_mode, sample_params, state_after, SampleMode};
use super::kernels::{BAD_NAN, MAX_SEG, S_BAD, S_TOKEN};
use super::norms::Normed;
use super::ops::OpBuilder;
use super::options::VulkanOptions;
use super::pipeline::DescriptorArena;
use super::profile::{self, Calibration, Profile, Profiler, TimestampSupport};
use super::shared::SharedWeights;
use super::upload::download;
use crate::engine::{Engine, EngineError, EngineResult, SamplingParams, Stats};
use crate::model::Model;

/// How many sampling modes have their own recordings (`SampleMode::ALL`).
const N_MODES: usize = SampleMode::ALL.len();

/// One command buffer per sampling mode (index `mode as usize`), each made by `make`.
fn per_mode(mut make: impl FnMut() -> VkResult<CmdBuffer>) -> VkResult<[CmdBuffer; N_MODES]> {
    Ok([make()?, make()?, make()?])
}

/// What a profiled engine has on top: the timed decode recordings (as `VulkanEngine::decode`)
/// and the sums.
struct Prof {
    decode: [CmdBuffer; N_MODES],
    ts: TimestampSupport,
    calibration: Calibration,
    profiler: Profiler,
}

/// The Vulkan engine: the model's weights and KV cache in device memory, every layer on the GPU.
pub struct VulkanEngine {
    // Field order is drop order: command buffers (which wait for their work) first.
    /// `--profile`: `None` when off (then nothing timed is recorded or submitted).
    prof: Option<Box<Prof>>,
    /// Feed the unfed token, run the model, sample (steady state): one recording per
    /// `SampleMode` (index `mode as usize`), each with that mode's selection (`SampleOps`),
    /// picked per step by the parameters (`mode`).
    decode: [CmdBuffer; N_MODES],
    /// Sample only (the first step after a prefill, whose logits are already there), the same
    /// three ways.
    sample_only: [CmdBuffer; N_MODES],
    /// The mode of the parameters `set_draw` wrote last (`kernels::sample_mode`): the
    /// recordings to run are [mode as usize].
    pub(super) mode: SampleMode,
    batch: CmdBuffer,
    graph: Graph,
    /// The head over every row of a batch (`prefill_all_logits`), built when first asked:
    /// `graph.head` runs one token, without the mat-mat pipeline only this path dispatches.
    head_all: Option<Normed>,
    arena: DescriptorArena,
    /// Held for the descriptor sets that point into them (batch.rs binds them too).
    pub(super) kv: Vec<(super::buffer::Buffer, super::buffer::Buffer)>,
    pub(super) acts: Acts,
    /// The weights and kernels, shared with the other engines of `pigpu serve --parallel`.
    shared: Rc<SharedWeights>,
    dev: Arc<Device>,
    model: Arc<Model>,
    n_ctx: usize,
    pub(super) n_past: usize,
    /// Logits of the last token run are on the device.
    pending: bool,
    /// The token `step` returned last, not yet run through the model (it is in device state).
    pub(super) unfed: Option<u32>,
    /// What the device's history ring was given since the last reset, in order (every token
    /// fed, and the one sampled last): kept on the host so `keep_prefix` can rewrite the ring.
    history: Vec<u32>,
    pub(super) stats: Stats,
    /// `arena.updates` at the last `reset_stats`.
    updates_base: u64,
    /// Bytes uploaded while loading (weights).
    pub load_upload_bytes: u64,
    /// Time the weight upload took (reading the memory map, staging, copy commands).
    pub load_upload_ns: u64,
}

impl VulkanEngine {
    /// Opens the device, uploads the weights, allocates the KV cache for `opts.n_ctx` positions
    /// and records the decode step.
    pub fn new(model: Arc<Model>, opts: &VulkanOptions) -> VkResult<VulkanEngine> {
        let dev = Device::open(&opts.tuning)?;
        Self::with_device(dev, model, opts)
    }

    pub(crate) fn with_device(
        dev: Arc<Device>,
        model: Arc<Model>,
        opts: &VulkanOptions,
    ) -> VkResult<VulkanEngine> {
        // Refuse what will not fit before uploading anything.
        super::memory::check(&dev, &model, opts.n_ctx.max(1), true)?;
        let shared = SharedWeights::load(dev, &model, &opts.progress)?;
        Self::with_shared(shared, model, opts)
    }

    /// An engine over weights already on the device (`SharedWeights::load`): its own KV cache,
    /// activations, state and recordings, nothing uploaded. `model` must be the one `shared`
    /// was loaded from.
    pub fn with_shared(
        shared: Rc<SharedWeights>,
        model: Arc<Model>,
        opts: &VulkanOptions,
    ) -> VkResult<VulkanEngine> {
        let dev = shared.dev.clone();
        let c = &model.config;
        let n_ctx = opts.n_ctx.max(1);
        // Refuse what will not fit before allocating anything (the weights are up already).
        super::memory::check(&dev, &model, n_ctx, false)?;
        let (load_upload_bytes, load_upload_ns) = (shared.upload_bytes, shared.upload_ns);
        let kv = graph::kv_cache(&dev, c, n_ctx)?;
        let splits = Splits::for_context(&dev, n_ctx);
        let acts = Acts::new(&dev, c, graph::ubatch_for(&dev, c), splits)?;
        let kernels = &shared.kernels;
        // Up to 13 sets per layer: 12 ops (graph.rs: Q/K norms and post-norms add three, the
        // norm pass two, the folded decode attention one) and the lanes prompt attention's own
        // set where it reads K and V through texel views.
        let sets = (13 * c.n_layer + 16 + 2 * MAX_SEG) as u32;
        let mut arena = DescriptorArena::new(&dev, sets, sets * 8)?;
        // Every pipeline the graph's ops can dispatch, created together before any recording.
        let graph = kernels.all_at_once(|| {
            graph::build(
                &mut OpBuilder {
                    kernels,
                    arena: &mut arena,
                },
                c,
                &shared.weights,
                &acts,
                &kv,
            )
        })?;
        kernels.save_cache();
        let mut e = VulkanEngine {
            prof: None,
            decode: per_mode(|| CmdBuffer::new(&dev))?,
            sample_only: per_mode(|| CmdBuffer::new(&dev))?,
            mode: SampleMode::Any,
            batch: CmdBuffer::new(&dev)?,
            graph,
            head_all: None,
            arena,
            kv,
            acts,
            shared,
            dev,
            n_ctx,
            n_past: 0,
            pending: false,
            unfed: None,
            history: Vec::new(),
            stats: Stats::default(),
            updates_base: 0,
            load_upload_bytes,
            load_upload_ns,
            model,
        };
        e.record_decode()?;
        e.write_state(&state_after(&[]))?;
        #[cfg(feature = "testing")]
        if let Some(n) = e.dev.tuning.lose_device_after {
            e.dev.lose_after_submits(n);
        }
        Ok(e)
    }

    /// The decode step: embed the sampled token -> layers -> head -> sample -> token to host;
    /// with the sampler's selection for `mode`.
    fn record_decode_into(
        graph: &Graph,
        acts: &Acts,
        cmd: &mut CmdBuffer,
        mode: SampleMode,
    ) -> VkResult<()> {
        cmd.begin(true)?;
        graph.embed_state.record(cmd, 1);
        for l in &graph.layers {
            l.record(cmd, 1);
        }
        graph.head.record(cmd, 1);
        graph.sample.get(mode).record(cmd, 1);
        Self::record_readback(acts, cmd);
        cmd.end()
    }

    /// Records the copy of what the sampler left in the state to the host: the token, then the
    /// verdict on the logits (`S_BAD`), 8 bytes. Nothing where the host reads the state in
    /// place (`Acts::state_mapped`).
    fn record_readback(acts: &Acts, cmd: &mut CmdBuffer) {
        if acts.state_mapped {
            return;
        }
        let ranges = [((S_TOKEN * 4) as u64, 0, 4), ((S_BAD * 4) as u64, 4, 4)];
        cmd.copy_ranges(&acts.state, &acts.readback, &ranges);
    }

    /// Records the decode step and the sample-only step, once per `SampleMode`.
    fn record_decode(&mut self) -> VkResult<()> {
        for mode in SampleMode::ALL {
            let i = mode as usize;
            Self::record_decode_into(&self.graph, &self.acts, &mut self.decode[i], mode)?;
            let cmd = &mut self.sample_only[i];
            cmd.begin(true)?;
            self.graph.sample.get(mode).record(cmd, 1);
            Self::record_readback(&self.acts, cmd);
            cmd.end()?;
        }
        Ok(())
    }

    /// Records this engine's sampler prefilter (over its logits row 0; nothing on the one-stage
    /// path) into a batched pass (batch.rs records it for every slot as a group, then each
    /// slot's selection).
    pub(super) fn record_sample_pre(&self, cmd: &mut CmdBuffer) {
        self.graph.sample.any.record_sample_stage(cmd, true);
    }

    /// Records this engine's sampler selection (after its prefilter) into a batched pass: the
    /// one for the mode of the parameters written last (`set_draw`).
    pub(super) fn record_sample_select(&self, cmd: &mut CmdBuffer) {
        self.graph
            .sample
            .get(self.mode)
            .record_sample_stage(cmd, false);
    }

    /// Records the copy of this engine's sampled token and verdict to its readback (batch.rs).
    pub(super) fn record_sample_readback(&self, cmd: &mut CmdBuffer) {
        Self::record_readback(&self.acts, cmd);
    }

    /// Writes the next sample's parameters and uniform draw where the recorded sampler reads
    /// them (a host-visible buffer: a write, not a descriptor update).
    pub(super) fn set_draw(&mut self, params: &SamplingParams, u: f32) {
        let p = sample_params(params, u);
        self.mode = sample_mode(params);
        self.acts.params.write(0, u32_bytes(&p));
        self.stats.upload_bytes += std::mem::size_of_val(&p) as u64;
    }

    /// Takes what a completed sample left in the readback: the token, or the typed error when
    /// the logits were not finite. `fed`: the step also ran the pending token through the model.
    pub(super) fn take_sampled(&mut self, fed: bool) -> EngineResult<u32> {
        let mut rb = [0u8; 8];
        if self.acts.state_mapped {
            let (tok, bad) = rb.split_at_mut(4);
            self.acts.state.read((S_TOKEN * 4) as u64, tok);
            self.acts.state.read((S_BAD * 4) as u64, bad);
        } else {
            self.acts.readback.read(0, &mut rb);
        }
        self.stats.readback_bytes += rb.len() as u64;
        if fed {
            self.n_past += 1;
        }
        let token = u32::from_le_bytes(rb[..4].try_into().unwrap());
        let verdict = u32::from_le_bytes(rb[4..].try_into().unwrap());
        // The sampler put it in the ring (0 with a bad verdict).
        self.history.push(token);
        if verdict != 0 {
            // Nothing to continue from: the next call must prefill (after a reset).
            self.pending = false;
            self.unfed = None;
            return Err(EngineError::NonFinite {
                position: self.n_past,
                what: if verdict & BAD_NAN != 0 {
                    "NaN"
                } else {
                    "infinite"
                },
            });
        }
        self.unfed = Some(token);
        self.stats.tokens += 1;
        Ok(token)
    }

    /// Timestamps a command buffer of this graph may need: every op of a prompt batch or a
    /// decode step, the copies, and room for a few more.
    fn stamp_capacity(&self) -> u32 {
        let ops: usize = self.graph.layers.iter().map(graph::Layer::len).sum();
        (ops + 16) as u32
    }

    /// Turns per-op GPU timing on (measuring the device's yardsticks the first time) or off.
    /// Off, the engine records and submits exactly what it does without profiling.
    pub fn set_profiling(&mut self, on: bool) -> VkResult<()> {
        if on == self.prof.is_some() {
            return Ok(());
        }
        if !on {
            self.prof = None;
            self.batch = CmdBuffer::new(&self.dev)?;
            return Ok(());
        }
        let ts = profile::timestamp_support(&self.dev)?;
        let calibration = profile::calibrate(&self.dev, &self.shared.kernels, &mut self.arena, ts)?;
        let cap = self.stamp_capacity();
        let mut decode = per_mode(|| CmdBuffer::timed(&self.dev, cap))?;
        for (cmd, mode) in decode.iter_mut().zip(SampleMode::ALL) {
            Self::record_decode_into(&self.graph, &self.acts, cmd, mode)?;
        }
        self.batch = CmdBuffer::timed(&self.dev, cap)?;
        self.prof = Some(Box::new(Prof {
            decode,
            ts,
            calibration,
            profiler: Profiler::default(),
        }));
        Ok(())
    }

    /// What was timed since profiling was turned on or since the last call (`None` when off).
    pub fn take_profile(&mut self) -> Option<Profile> {
        let name = self.describe();
        let p = self.prof.as_mut()?;
        Some(p.profiler.take(&name, p.ts, &p.calibration))
    }

    /// Overwrites the whole device state (`kernels::state_after`'s words).
    fn write_state(&mut self, words: &[u32]) -> VkResult<()> {
        let cmd = &mut self.batch;
        cmd.begin(false)?;
        cmd.update(&self.acts.state, 0, u32_bytes(words));
        cmd.end()?;
        cmd.submit_wait()
    }

    /// Keeps the first `n` (≤ `n_past`) positions: the host's view cut to them and the device
    /// state rewritten as it is after feeding exactly those tokens. The KV cache past `n` is
    /// left as it is (attention reads only positions up to the current one, and the next batch
    /// overwrites them), and the recorded steps read everything else from the state, so the
    /// engine goes on as one fed only those tokens; `n` = 0 is a fresh engine's state.
    fn rewind(&mut self, n: usize) -> VkResult<()> {
        self.n_past = n;
        self.pending = false;
        self.unfed = None;
        self.history.truncate(n);
        self.write_state(&state_after(&self.history))
    }

    /// The device state's words (tests compare them with `kernels::state_after`).
    #[cfg(any(test, feature = "testing"))]
    pub fn device_state(&self) -> VkResult<Vec<u32>> {
        let bytes = download(&self.dev, &self.acts.state, 0, self.acts.state.size)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// The head (and its norm pass, if any) reading x from row `row` on, writing logits from
    /// row 0 on.
    fn head_at(&self, row: u32) -> Normed {
        self.graph.head.at(row * self.model.config.n_embd as u32)
    }

    /// The head over every row of a batch (rows 0..n of x into logits rows 0..n); its
    /// mat-mat's pipeline is created on the first call (the first all-logits batch).
    fn head_all(&mut self) -> VkResult<&Normed> {
        let head = match self.head_all.take() {
            Some(h) => h,
            None => {
                let c = &self.model.config;
                let (x, xn, logits) = graph::head_io(c, &self.acts);
                let kernels = &self.shared.kernels;
                kernels.all_at_once(|| {
                    let mut b = OpBuilder {
                        kernels,
                        arena: &mut self.arena,
                    };
                    graph::head(&mut b, c, &self.shared.weights, x, xn, logits, true)
                })?
            }
        };
        Ok(self.head_all.insert(head))
    }

    /// Runs one batch of at most `acts.ubatch` tokens through the layers. `all_logits`: the head over
    /// every token (rows 0..n of the logits), else only the last token's (row 0) when `head`.
    /// Tokens before `hist_from` are not added to the repetition-penalty history.
    fn run_batch(
        &mut self,
        tokens: &[u32],
        head: bool,
        all_logits: bool,
        hist_from: u32,
    ) -> anyhow::Result<()> {
        let n = tokens.len() as u32;
        self.acts
            .tokens_up
            .as_mut()
            .unwrap_or(&mut self.acts.tokens)
            .write(0, u32_bytes(tokens));
        let head_op = if all_logits {
            self.head_all()?.at(0)
        } else {
            self.head_at(n - 1)
        };
        // The batch's bookkeeping words: the host's n_past and history are the device's.
        let embed = self.graph.embed_tokens.embed_for_batch(
            hist_from,
            self.n_past as u32,
            self.history.len() as u32,
        );
        let cmd = &mut self.batch;
        cmd.begin(false)?;
        cmd.n_past = Some(self.n_past as u32);
        if let Some(up) = &self.acts.tokens_up {
            cmd.copy(up, 0, &self.acts.tokens, 0, 4 * n as u64);
        }
        embed.record(cmd, n);
        for l in &self.graph.layers {
            l.record(cmd, n);
        }
        if head {
            head_op.record(cmd, if all_logits { n } else { 1 });
        }
        cmd.end()?;
        let dispatches = cmd.dispatches;
        let t0 = Instant::now();
        cmd.submit_wait()
            .context("running a prompt batch on the GPU")?;
        if let Some(p) = &mut self.prof {
            let wall = t0.elapsed().as_nanos() as f64;
            let times = cmd.times(p.ts.period_ns, p.ts.valid_bits)?;
            p.profiler.prompt.add(n as u64, wall, times, cmd.untimed());
        }
        self.stats.submits += 1;
        self.stats.command_buffers_recorded += 1;
        self.stats.dispatches += dispatches;
        self.stats.upload_bytes += 4 * n as u64;
        self.n_past += tokens.len();
        // What the embedding put in the ring.
        self.history
            .extend_from_slice(&tokens[(hist_from as usize).min(tokens.len())..]);
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> EngineResult<()> {
        if tokens.is_empty() {
            return Err(EngineError::BadInput(
                "vulkan: prefill needs at least one token".into(),
            ));
        }
        let before = self.n_past + self.unfed.is_some() as usize;
        if before + tokens.len() > self.n_ctx {
            return Err(EngineError::ContextFull(format!(
                "vulkan: {} tokens after {before} already in the context exceed the context length {} (use a larger --ctx)",
                tokens.len(),
                self.n_ctx
            )));
        }
        let n_vocab = self.model.config.n_vocab;
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::BadInput(format!(
                "vulkan: token id {t} is outside the vocabulary (size {n_vocab})"
            )));
        }
        Ok(())
    }

    /// The decode mat-vec shape in use: (workgroup size, rows per workgroup, path), path 0 =
    /// shared-memory tree, 1 = lane per row (CPU implementations), 2 = subgroup (GPUs).
    pub fn matvec_shape(&self) -> [u32; 3] {
        self.shared.kernels.matvec_shape()
    }

    /// The choices made by device kind (`PIGPU_VK_AS` or the device's own): what tests check to
    /// know which paths really ran.
    pub fn choices(&self) -> Choices {
        *self.dev.choices()
    }

    /// Whether decoding runs the split attention (`Choices::split_attention`), and over how
    /// many splits of the KV range.
    pub fn attention_splits(&self) -> Option<u32> {
        self.acts.splits.map(|s| s.n_split)
    }

    /// Runs the token sampled last (if any) through the model, without logits.
    fn feed_unfed(&mut self) -> anyhow::Result<()> {
        if let Some(t) = self.unfed.take() {
            // Already in the history (the sampler put it there).
            self.run_batch(&[t], false, false, 1)?;
        }
        Ok(())
    }

    /// Test hook (test builds only): after `n` more queue submits, every submit fails as if the
    /// device were lost (`Tuning::lose_device_after`), to test recovery with this engine's real
    /// errors.
    #[cfg(any(test, feature = "testing"))]
    pub fn lose_device_after_submits(&self, n: u64) {
        self.dev.lose_after_submits(n);
    }

    /// Validation-layer errors so far (tests assert there are none).
    pub fn take_validation_errors(&self) -> Vec<String> {
        self.dev.take_validation_errors()
    }
}

impl Engine for VulkanEngine {
    fn kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::Vulkan
    }

    fn describe(&self) -> String {
        let c = self.dev.choices();
        let proxy = match (c.proxy, c.gpu) {
            (false, _) => "",
            (true, true) => ", choosing as a GPU",
            (true, false) => ", choosing as a CPU implementation",
        };
        format!(
            "vulkan: {} ({:?}{proxy})",
            self.dev.info.name, self.dev.info.kind
        )
    }

    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn n_past(&self) -> usize {
        self.n_past
    }

    fn reset(&mut self) {
        // A failure here (device lost) resurfaces on the next submit.
        let _ = self.rewind(0);
    }

    fn keep_prefix(&mut self, n: usize) -> EngineResult<usize> {
        let n = n.min(self.n_past);
        self.rewind(n)
            .context("rewinding the decoding state on the GPU")
            .map_err(to_engine)?;
        Ok(n)
    }

    fn prefill(&mut self, tokens: &[u32]) -> EngineResult<()> {
        let t0 = Instant::now();
        self.check_tokens(tokens)?;
        self.feed_unfed().map_err(to_engine)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.acts.ubatch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.run_batch(chunk, i + 1 == chunks.len(), false, 0)
                .map_err(to_engine)?;
        }
        self.pending = true;
        self.stats.host_ns += t0.elapsed().as_nanos() as u64;
        Ok(())
    }

    fn step(&mut self, params: &SamplingParams, u: f32) -> EngineResult<u32> {
        let t0 = Instant::now();
        if !self.pending {
            return Err(EngineError::BadInput(
                "vulkan: step without pending logits (prefill first)".into(),
            ));
        }
        let feed = self.unfed.is_some();
        if feed && self.n_past >= self.n_ctx {
            return Err(EngineError::ContextFull(format!(
                "vulkan: the context ({} tokens) is full",
                self.n_ctx
            )));
        }
        self.set_draw(params, u);
        let g = self.mode as usize;
        let cmd = match (&self.prof, feed) {
            (Some(p), true) => &p.decode[g],
            (None, true) => &self.decode[g],
            (_, false) => &self.sample_only[g],
        };
        let t_submit = Instant::now();
        cmd.submit()
            .context("submitting a decode step")
            .map_err(to_engine)?;
        let t_wait = Instant::now();
        cmd.wait()
            .context("waiting for a decode step")
            .map_err(to_engine)?;
        let waited = t_wait.elapsed();
        let dispatches = cmd.dispatches;
        if let (Some(p), true) = (&mut self.prof, feed) {
            let wall = t_submit.elapsed().as_nanos() as f64;
            let times = p.decode[g].times(p.ts.period_ns, p.ts.valid_bits)?;
            let untimed = p.decode[g].untimed();
            p.profiler.decode.add(1, wall, times, untimed);
        }
        self.stats.submits += 1;
        self.stats.dispatches += dispatches;
        let sampled = self.take_sampled(feed);
        self.stats.host_ns += (t0.elapsed() - waited).as_nanos() as u64;
        sampled
    }

    fn logits(&mut self) -> EngineResult<Vec<f32>> {
        if !self.pending {
            return Err(EngineError::BadInput(
                "vulkan: no pending logits (prefill first)".into(),
            ));
        }
        let n = self.model.config.n_vocab;
        let bytes = download(&self.dev, &self.acts.logits, 0, (n * 4) as u64)?;
        self.stats.readback_bytes += bytes.len() as u64;
        self.stats.submits += 1;
        self.stats.command_buffers_recorded += 1;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    fn prefill_all_logits(&mut self, tokens: &[u32]) -> EngineResult<Vec<f32>> {
        let t0 = Instant::now();
        self.check_tokens(tokens)?;
        self.feed_unfed().map_err(to_engine)?;
        let n_vocab = self.model.config.n_vocab;
        let mut out = Vec::with_capacity(tokens.len() * n_vocab);
        let rows = self.acts.logits_rows;
        for chunk in tokens.chunks(rows) {
            self.run_batch(chunk, true, true, 0).map_err(to_engine)?;
            let bytes = download(
                &self.dev,
                &self.acts.logits,
                0,
                (chunk.len() * n_vocab * 4) as u64,
            )?;
            self.stats.readback_bytes += bytes.len() as u64;
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
            );
        }
        // Leave the last token's logits in row 0 for `step`.
        let last = tokens.chunks(rows).last().map_or(0, |c| c.len()) as u32;
        if last > 1 {
            let op = self.head_at(last - 1);
            let cmd = &mut self.batch;
            cmd.begin(false)?;
            op.record(cmd, 1);
            cmd.end()?;
            cmd.submit_wait()?;
            self.stats.submits += 1;
            self.stats.command_buffers_recorded += 1;
            self.stats.dispatches += op.len() as u64;
        }
        self.pending = true;
        self.stats.host_ns += t0.elapsed().as_nanos() as u64;
        Ok(out)
    }

    fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.descriptor_updates = self.arena.updates - self.updates_base;
        s
    }

    fn reset_stats(&mut self) {
        self.stats = Stats::default();
        self.updates_base = self.arena.updates;
    }

    fn weight_upload(&self) -> Option<(u64, u64)> {
        Some((self.load_upload_bytes, self.load_upload_ns))
    }

    fn set_profiling(&mut self, on: bool) -> EngineResult<()> {
        Ok(VulkanEngine::set_profiling(self, on)?)
    }

    fn take_profile(&mut self) -> Option<Profile> {
        VulkanEngine::take_profile(self)
    }
}
