//! `--backend auto`'s safety net: an engine that runs on the GPU until a Vulkan call fails
//! (device lost, out of device memory, a hung submit) and then carries on with the CPU engine,
//! saying so (a warning). It remembers every token fed or sampled since the last `reset`, so the
//! CPU engine can re-run them (one prefill) and the generation continues where it was; the
//! failed call is then retried on the CPU. What counts as the GPU failing is the engine
//! boundary's `EngineError::is_gpu_failure`; other errors (a full context, a bad token id) pass
//! through unchanged, and `--backend vulkan` never gets this wrapper.

use std::sync::Arc;

use anyhow::Context;

use super::cpu::{CpuEngine, CpuOptions};
use super::{Engine, EngineError, EngineResult as Result, SamplingParams, Stats};
use crate::model::Model;

/// An engine that starts on the GPU and, when the GPU fails, replays the context on the CPU engine
/// and goes on there.
pub struct Fallback {
    inner: Box<dyn Engine>,
    /// Still on the first engine (the GPU).
    on_gpu: bool,
    model: Arc<Model>,
    cpu: CpuOptions,
    /// Tokens fed or returned by `step` since `reset`, in order: what the CPU engine re-runs.
    tokens: Vec<u32>,
}

/// Whether `e`, passed up through `anyhow` by a caller, is an engine's GPU failure (as opposed
/// to bad input or a full context).
pub fn is_gpu_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<EngineError>()
            .is_some_and(EngineError::is_gpu_failure)
    })
}

impl Fallback {
    /// Wraps `gpu`; on a Vulkan failure a CPU engine for `model` is built with `cpu`.
    pub fn new(gpu: Box<dyn Engine>, model: Arc<Model>, cpu: CpuOptions) -> Fallback {
        Fallback {
            inner: gpu,
            on_gpu: true,
            model,
            cpu,
            tokens: Vec::new(),
        }
    }

    /// Whether the GPU failed and the CPU engine took over.
    pub fn fell_back(&self) -> bool {
        !self.on_gpu
    }

    /// Runs `f` on the current engine; if the GPU fails, switches to the CPU engine
    /// (re-running `self.tokens`) and runs `f` there.
    fn call<T>(&mut self, f: impl Fn(&mut dyn Engine) -> Result<T>) -> Result<T> {
        match f(self.inner.as_mut()) {
            Err(e) if self.on_gpu && e.is_gpu_failure() => {
                self.switch(&e)?;
                f(self.inner.as_mut())
            }
            r => r,
        }
    }

    fn switch(&mut self, why: &EngineError) -> Result<()> {
        log::warn!(
            "the GPU failed ({}); continuing on the CPU (re-running the {} tokens so far)",
            chain(why),
            self.tokens.len()
        );
        let mut cpu = CpuEngine::new(self.model.clone(), &self.cpu)
            .context("starting the CPU engine after the GPU failed")?;
        if !self.tokens.is_empty() {
            cpu.prefill(&self.tokens)
                .context("re-running the tokens so far on the CPU engine")?;
        }
        self.inner = Box::new(cpu);
        self.on_gpu = false;
        Ok(())
    }
}

/// `e` with its causes, `a: b: c`, as `{:#}` prints an `anyhow` chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut c = e.source();
    while let Some(x) = c {
        s.push_str(": ");
        s.push_str(&x.to_string());
        c = x.source();
    }
    s
}

impl Engine for Fallback {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn kind(&self) -> super::EngineKind {
        self.inner.kind()
    }
    fn n_ctx(&self) -> usize {
        self.inner.n_ctx()
    }
    fn n_past(&self) -> usize {
        self.inner.n_past()
    }
    fn reset(&mut self) {
        self.tokens.clear();
        self.inner.reset();
    }
    fn keep_prefix(&mut self, n: usize) -> Result<usize> {
        let k = self.call(|e| e.keep_prefix(n))?;
        self.tokens.truncate(k);
        Ok(k)
    }
    fn prefill(&mut self, tokens: &[u32]) -> Result<()> {
        self.call(|e| e.prefill(tokens))?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }
    fn step(&mut self, params: &SamplingParams, u: f32) -> Result<u32> {
        let t = self.call(|e| e.step(params, u))?;
        self.tokens.push(t);
        Ok(t)
    }
    fn logits(&mut self) -> Result<Vec<f32>> {
        self.call(|e| e.logits())
    }
    fn prefill_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let l = self.call(|e| e.prefill_all_logits(tokens))?;
        self.tokens.extend_from_slice(tokens);
        Ok(l)
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats();
    }
    fn weight_upload(&self) -> Option<(u64, u64)> {
        self.inner.weight_upload()
    }
    fn set_profiling(&mut self, on: bool) -> Result<()> {
        self.inner.set_profiling(on)
    }
    fn take_profile(&mut self) -> Option<crate::engine::vulkan::Profile> {
        self.inner.take_profile()
    }
}
