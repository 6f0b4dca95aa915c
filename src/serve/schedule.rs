//! The slots: engines (each with its own KV cache, all over the one shared model that `session`
//! loaded) taking jobs from the queue, all driven by one thread that decodes the busy ones
//! together. With `--backend vulkan`, or `auto` where a GPU is usable, the slots share one
//! upload of the weights and each step is one submit: one pass over the weights for every busy
//! slot, then each slot's sampler with its own settings (`VulkanSlots::step_all`). On the CPU
//! engine (`--backend cpu`, or `auto` without a usable GPU) the busy slots' pending tokens go
//! through one pass (`CpuEngine::feed_pending_batch`) and each samples on the host.
//! Either way a job runs the same steps as `session::generate` (so greedy output equals `pigpu
//! run`'s), checking after every token whether its client is still there.
//! A slot keeps its cache after a job, on either engine: the next job whose prompt starts with
//! the same tokens (a chat's next turn, a shared system prompt, a repeated request) goes to the
//! free slot that shares the longest prefix, which keeps that part (`Engine::keep_prefix`) and
//! feeds only the rest, as llama-server's `cache_prompt` does.
//! A job constrained to JSON (`response_format`) samples on the host instead, as
//! `session::generate_with` does: it feeds its last token alone, reads the logits back and masks
//! them, so it does not share the batched pass.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;

use super::metrics::{Metrics, RequestOutcome};
use super::slots::{Done, Finish, Job, JobEvent, Queue};
use crate::engine::cpu::CpuEngine;
use crate::engine::vulkan::{VulkanOptions, VulkanSlots};
use crate::engine::{Backend, Engine, EngineError, EngineResult, SamplingParams};
use crate::model::sampler::{self, Rng};
use crate::model::tokenizer::{StreamDecoder, Tokenizer};
use crate::session::constrain::{JsonConstraint, TokenTrie, Top};
use crate::session::stop::StopText;
use crate::session::{Session, SessionOptions, SharedModel};

/// What the slots run, once every one has its engine.
pub struct Started {
    pub shared: Arc<SharedModel>,
    /// What runs, for the log: the engine, and `decode batched` when the slots share passes.
    pub describe: String,
    /// Context of each slot.
    pub n_ctx: usize,
}

/// A slot's draw for one step: the slot, its sampling parameters, its uniform number.
type Draw<'a> = (usize, &'a SamplingParams, f32);

/// A set of engines driven by one thread.
trait SlotSet {
    fn len(&self) -> usize;
    fn engine(&mut self, i: usize) -> &mut dyn Engine;
    /// One token for each slot of `draws`: feeds its pending token and samples, all of them
    /// together where the engine can. Err: a shared pass failed (every slot in it fails); else
    /// each slot's own result, in the order of `draws`.
    fn step_all(&mut self, draws: &[Draw<'_>]) -> anyhow::Result<Vec<EngineResult<u32>>>;
}

/// CPU sessions over one model, decoded together.
struct CpuSet(Vec<Session>);

impl SlotSet for CpuSet {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn engine(&mut self, i: usize) -> &mut dyn Engine {
        self.0[i].engine.as_mut()
    }
    fn step_all(&mut self, draws: &[Draw<'_>]) -> anyhow::Result<Vec<EngineResult<u32>>> {
        let mut refs: Vec<&mut CpuEngine> = Vec::with_capacity(draws.len());
        for (i, s) in self.0.iter_mut().enumerate() {
            if draws.iter().any(|d| d.0 == i) {
                refs.push(s.engine.as_cpu_mut().ok_or_else(|| {
                    anyhow::anyhow!("slot {i} is not on the CPU engine; it cannot join the batch")
                })?);
            }
        }
        CpuEngine::feed_pending_batch(&mut refs)?;
        // Sampling on the host: each slot's `step` (its pending token is fed).
        Ok(draws
            .iter()
            .map(|&(i, p, u)| self.0[i].engine.step(p, u))
            .collect())
    }
}

impl SlotSet for VulkanSlots {
    fn len(&self) -> usize {
        VulkanSlots::len(self)
    }
    fn engine(&mut self, i: usize) -> &mut dyn Engine {
        VulkanSlots::engine(self, i)
    }
    fn step_all(&mut self, draws: &[Draw<'_>]) -> anyhow::Result<Vec<EngineResult<u32>>> {
        VulkanSlots::step_all(self, draws)
    }
}

/// A slot thread's report: its start, or why it could not start.
type Report = anyhow::Result<Started>;

/// Starts `n` slots on one thread and waits until each has its engine; returns the thread and
/// what runs. The model is loaded and checked by the session layer as for `pigpu run`;
/// `--backend vulkan`, or `auto` where a GPU is usable, builds every slot over one upload of the
/// weights (`VulkanSlots`); the CPU engine (`--backend cpu`, or `auto` without a usable GPU or
/// with a model too large for it) gives every slot a CPU engine over the one memory map. Either
/// way the slots decode batched. Engines need not be `Send`: they are built on the thread that
/// drives them. On failure the queue is closed and the error returned.
pub fn start(
    n: usize,
    path: PathBuf,
    opts: SessionOptions,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Started)> {
    let (tx, rx) = std::sync::mpsc::channel::<Report>();
    let (q, m) = (queue.clone(), metrics.clone());
    let handle = std::thread::Builder::new()
        .name("slots".into())
        .spawn(move || slots(n, &path, opts, tx, &q, &m))?;
    let started = match rx.recv() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            queue.close();
            return Err(e);
        }
        Err(_) => {
            queue.close();
            anyhow::bail!("the slots' thread ended before building its engines");
        }
    };
    Ok((vec![handle], started))
}

/// The slots' thread: builds the engines (the GPU's first, for `vulkan` and `auto`), reports,
/// then drives them until the queue closes.
fn slots(
    n: usize,
    path: &std::path::Path,
    mut opts: SessionOptions,
    tx: Sender<Report>,
    queue: &Queue,
    metrics: &Metrics,
) {
    if matches!(opts.backend, Backend::Vulkan | Backend::Auto) {
        // The GPU failing to start is `auto`'s cue for the CPU; a bad file or option is not.
        let built = SharedModel::load(path, &opts)
            .map(|(shared, n_ctx)| vulkan_slots(n, shared, n_ctx, &opts));
        match built {
            Ok(Ok((mut set, started))) => {
                let shared = started.shared.clone();
                let _ = tx.send(Ok(started));
                drop(tx);
                drive(&mut set, queue, &shared.tokenizer, metrics);
                return;
            }
            Ok(Err(e)) if opts.backend == Backend::Auto => {
                crate::engine::auto_on_cpu(&e);
                opts.backend = Backend::Cpu;
            }
            Ok(Err(e)) => {
                let e = anyhow::Error::from(e).context(format!(
                    "preparing {} for the Vulkan engine",
                    path.display()
                ));
                let _ = tx.send(Err(e));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    match cpu_slots(n, path, &opts) {
        Ok((mut set, started)) => {
            let shared = started.shared.clone();
            let _ = tx.send(Ok(started));
            drop(tx);
            drive(&mut set, queue, &shared.tokenizer, metrics);
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    }
}

/// The CPU engine: the first session loads the model (checks, warm-up), the other slots attach
/// CPU engines over the same memory map.
fn cpu_slots(
    n: usize,
    path: &std::path::Path,
    opts: &SessionOptions,
) -> anyhow::Result<(CpuSet, Started)> {
    let s0 = Session::load(path, opts)?;
    log::info!("{}", s0.summary());
    let started = Started {
        shared: s0.shared.clone(),
        describe: format!("{}, decode batched", s0.engine.describe()),
        n_ctx: s0.engine.n_ctx(),
    };
    let mut set = vec![s0];
    for i in 1..n {
        set.push(
            Session::attach(started.shared.clone(), opts).with_context(|| format!("slot {i}"))?,
        );
    }
    Ok((CpuSet(set), started))
}

/// `--backend vulkan` or `auto`: `n` engines over one upload of the weights of the model the
/// session layer loaded and checked (`shared`, with a context of `n_ctx`).
fn vulkan_slots(
    n: usize,
    shared: Arc<SharedModel>,
    n_ctx: usize,
    opts: &SessionOptions,
) -> Result<(VulkanSlots, Started), EngineError> {
    let mut o = VulkanOptions {
        n_ctx,
        progress: opts.progress.clone(),
        tuning: opts.tuning.vulkan.clone(),
    };
    if opts.device.is_some() {
        o.tuning.device = opts.device.clone();
    }
    let mut set = VulkanSlots::new(shared.model.clone(), n, &o)?;
    let describe = format!(
        "{}, weights shared, decode batched",
        set.engine(0).describe()
    );
    let started = Started {
        shared,
        describe,
        n_ctx,
    };
    Ok((set, started))
}

/// A job in a slot: what `session::generate` keeps on its stack, kept between steps.
struct Active<'t> {
    job: Job,
    rng: Rng,
    stop: StopText,
    dec: StreamDecoder<'t>,
    /// `response_format: json_object`: the constraint, and the prompt and generated tokens
    /// (the host sampler's history; the last one is fed at the next step).
    json: Option<(JsonConstraint, Vec<u32>)>,
    tokens: usize,
    /// Prompt tokens found in the slot's cache (not fed again).
    cached_tokens: usize,
    queued: std::time::Duration,
    prompt_time: std::time::Duration,
    gen_start: Instant,
}

/// What a slot's job does after a step.
enum Next {
    Continue,
    /// A stop string was found: the job is done.
    StopString,
    End(RequestOutcome),
}

/// The slots' loop: take jobs into free slots, then step every busy slot, until the queue is
/// closed and every slot is idle.
fn drive(set: &mut dyn SlotSet, queue: &Queue, tok: &Tokenizer, metrics: &Metrics) {
    let mut slots: Vec<Option<Active<'_>>> = (0..set.len()).map(|_| None).collect();
    // Per slot: the tokens its cache was fed, in order (its first `n_past` are in the cache).
    let mut fed: Vec<Vec<u32>> = vec![Vec::new(); set.len()];
    // Per slot: when it last took a job (a count), to reuse the least recently used.
    let mut used: Vec<u64> = vec![0; set.len()];
    let mut jobs = 0u64;
    // The vocabulary's trie, built when the first JSON job arrives.
    let mut trie: Option<Arc<TokenTrie>> = None;
    loop {
        // Fill free slots: wait for a job only when nothing is running.
        loop {
            let free: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_none()).collect();
            if free.is_empty() {
                break;
            }
            let idle = free.len() == slots.len();
            let job = if idle { queue.pop() } else { queue.try_pop() };
            let Some(job) = job else {
                if idle {
                    return; // closed and empty
                }
                break;
            };
            let i = choose_slot(&free, &fed, &used, &job.prompt);
            jobs += 1;
            used[i] = jobs;
            metrics.busy_slots.fetch_add(1, Ordering::Relaxed);
            match begin(set.engine(i), job, tok, &mut trie, &mut fed[i]) {
                Ok(a) => slots[i] = Some(a),
                Err(o) => {
                    metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
                    metrics.request(o);
                }
            }
        }
        // Jobs that end before this step: the token budget is spent, or the pending token
        // would not fit in the context (as in `session::generate`).
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            let e = set.engine(i);
            let full = a.tokens > 0 && e.n_past() + 1 > e.n_ctx();
            if a.tokens >= a.job.max_tokens || full {
                let a = slot.take().unwrap();
                release(metrics, finish(a, Finish::Length, false, metrics));
            }
        }
        let busy: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
        if busy.is_empty() {
            continue;
        }
        // Every busy slot draws its number, in slot order, whichever way it samples.
        let us: Vec<f32> = busy
            .iter()
            .map(|&i| slots[i].as_mut().unwrap().rng.next_f32())
            .collect();
        let mut sampled: Vec<Option<EngineResult<u32>>> = (0..slots.len()).map(|_| None).collect();
        {
            // Jobs sampling on the device, all in one step (a JSON job samples on the host).
            let draws: Vec<Draw<'_>> = busy
                .iter()
                .zip(&us)
                .filter_map(|(&i, &u)| {
                    let a = slots[i].as_ref().unwrap();
                    a.json.is_none().then_some((i, &a.job.params, u))
                })
                .collect();
            match set.step_all(&draws) {
                Ok(r) => {
                    for (d, t) in draws.iter().zip(r) {
                        sampled[d.0] = Some(t);
                    }
                }
                Err(e) => {
                    drop(draws);
                    for &i in &busy {
                        fed[i].clear();
                        let a = slots[i].take().unwrap();
                        let _ = a.job.events.send(JobEvent::Failed(format!("{e:#}")));
                        release(metrics, RequestOutcome::Failed);
                    }
                    continue;
                }
            }
        }
        for (&i, &u) in busy.iter().zip(&us) {
            let a = slots[i].as_mut().unwrap();
            let t = match (sampled[i].take(), a.json.as_mut()) {
                (Some(t), _) => t.map_err(anyhow::Error::from),
                (None, Some((c, history))) => {
                    host_step(set.engine(i), c, history, a.tokens > 0, &a.job, u, tok)
                }
                (None, None) => Err(anyhow::anyhow!("slot {i} was not stepped")),
            };
            let next = after(a, t, tok, metrics, &mut fed[i]);
            let o = match next {
                Next::Continue => continue,
                Next::StopString => finish(slots[i].take().unwrap(), Finish::Stop, true, metrics),
                Next::End(RequestOutcome::Ok) => {
                    finish(slots[i].take().unwrap(), Finish::Stop, false, metrics)
                }
                Next::End(o) => {
                    let a = slots[i].take().unwrap();
                    metrics.finished(a.job.prompt.len(), a.prompt_time, a.gen_start.elapsed());
                    o
                }
            };
            release(metrics, o);
        }
    }
}

fn release(metrics: &Metrics, o: RequestOutcome) {
    metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
    metrics.request(o);
}

/// The free slot for `prompt`: the one whose cache starts with most of it when that is at least
/// half the prompt (as llama-server's `--slot-prompt-similarity` 0.5), else the least recently
/// used, so a prompt that shares little (a BOS, a short system prompt) does not evict a cache a
/// later request could reuse.
fn choose_slot(free: &[usize], fed: &[Vec<u32>], used: &[u64], prompt: &[u32]) -> usize {
    let (best, shared) = free
        .iter()
        .map(|&i| (i, common_prefix(&fed[i], prompt)))
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
        .expect("a free slot");
    if shared > 0 && 2 * shared >= prompt.len() {
        return best;
    }
    *free
        .iter()
        .min_by_key(|&&i| (used[i], i))
        .expect("a free slot")
}

/// How many tokens `a` and `b` share at their start.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Starts a job in a slot: keep the part of the cache that the prompt starts with (unless the
/// job says `cache_prompt: false`), empty the rest, prefill the rest of the prompt. `fed` is
/// what the slot's cache was fed; it becomes the prompt.
fn begin<'t>(
    engine: &mut dyn Engine,
    job: Job,
    tok: &'t Tokenizer,
    trie: &mut Option<Arc<TokenTrie>>,
    fed: &mut Vec<u32>,
) -> Result<Active<'t>, RequestOutcome> {
    if job.events.is_closed() {
        return Err(RequestOutcome::Cancelled);
    }
    let json = job.json.then(|| {
        let trie = trie.get_or_insert_with(|| Arc::new(TokenTrie::new(tok)));
        (
            JsonConstraint::new(trie.clone(), Top::Object),
            job.prompt.clone(),
        )
    });
    let queued = job.queued_at.elapsed();
    // At least the prompt's last token is fed again: its logits give the first new token.
    let shared = common_prefix(fed, &job.prompt).min(job.prompt.len().saturating_sub(1));
    let t0 = Instant::now();
    let keep = if job.cache_prompt { shared } else { 0 };
    let fed_rest = engine
        .keep_prefix(keep)
        .and_then(|keep| engine.prefill(&job.prompt[keep..]).map(|()| keep));
    fed.clone_from(&job.prompt);
    let keep = match fed_rest {
        Ok(keep) => keep,
        Err(e) => {
            fed.clear();
            let _ = job.events.send(JobEvent::Failed(format!("{e:#}")));
            return Err(RequestOutcome::Failed);
        }
    };
    Ok(Active {
        rng: Rng::new(job.seed),
        stop: StopText::new(job.stop.clone()),
        dec: StreamDecoder::new(tok, false),
        json,
        tokens: 0,
        cached_tokens: keep,
        queued,
        prompt_time: t0.elapsed(),
        gen_start: Instant::now(),
        job,
    })
}

/// What a busy slot does with the token it sampled this step (or the error it got instead); a
/// sampled token is added to `fed`, as the next step feeds it.
fn after(
    a: &mut Active<'_>,
    sampled: anyhow::Result<u32>,
    tok: &Tokenizer,
    metrics: &Metrics,
    fed: &mut Vec<u32>,
) -> Next {
    let t = match sampled {
        Ok(t) => t,
        Err(e) => {
            let _ = a.job.events.send(JobEvent::Failed(format!("{e:#}")));
            return Next::End(RequestOutcome::Failed);
        }
    };
    if tok.is_eog(t) {
        return Next::End(RequestOutcome::Ok);
    }
    fed.push(t);
    a.tokens += 1;
    metrics.token();
    let (out, hit) = a.stop.push(&a.dec.push(t));
    if (!out.is_empty() && a.job.events.send(JobEvent::Text(out)).is_err())
        || a.job.events.is_closed()
    {
        return Next::End(RequestOutcome::Cancelled);
    }
    if hit {
        return Next::StopString;
    }
    if a.json.as_ref().is_some_and(|(c, _)| c.is_done()) {
        return Next::End(RequestOutcome::Ok);
    }
    Next::Continue
}

/// One constrained token: feed the previous one (if any), read the logits back, mask them and
/// sample on the host.
fn host_step(
    engine: &mut dyn Engine,
    c: &mut JsonConstraint,
    history: &mut Vec<u32>,
    feed_last: bool,
    job: &Job,
    u: f32,
    tok: &Tokenizer,
) -> anyhow::Result<u32> {
    if let (true, Some(&last)) = (feed_last, history.last()) {
        engine.prefill(&[last])?;
    }
    let mut logits = engine.logits()?;
    c.mask(&mut logits)?;
    let t = sampler::sample(&mut logits, history, &job.params, u);
    if !tok.is_eog(t) {
        c.accept(t)?;
        history.push(t);
    }
    Ok(t)
}

/// Ends a job: releases held-back text (unless a stop string ended it) and sends the figures.
fn finish(mut a: Active<'_>, f: Finish, hit: bool, metrics: &Metrics) -> RequestOutcome {
    let gen_time = a.gen_start.elapsed();
    metrics.finished(a.job.prompt.len(), a.prompt_time, gen_time);
    let mut finish = f;
    if !hit {
        let (mut out, h) = a.stop.push(&a.dec.finish());
        if h {
            finish = Finish::Stop;
        } else {
            out.push_str(&a.stop.finish());
        }
        if !out.is_empty() {
            let _ = a.job.events.send(JobEvent::Text(out));
        }
    }
    let done = Done {
        finish,
        prompt_tokens: a.job.prompt.len(),
        cached_tokens: a.cached_tokens,
        completion_tokens: a.tokens,
        queued: a.queued,
        prompt_time: a.prompt_time,
        gen_time,
    };
    if a.job.events.send(JobEvent::Done(done)).is_err() {
        return RequestOutcome::Cancelled;
    }
    RequestOutcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_goes_to_the_slot_that_shares_most_of_it_else_the_least_recently_used() {
        let fed = vec![vec![1, 2, 3, 4], vec![1, 9], vec![], vec![1, 2, 3, 4, 5, 6]];
        let used = [3, 1, 0, 2];
        // Shares 5 of 6 with slot 3, 4 with slot 0.
        assert_eq!(
            choose_slot(&[0, 1, 2, 3], &fed, &used, &[1, 2, 3, 4, 5, 7]),
            3
        );
        // Slot 3 busy: slot 0 shares 4 of 6.
        assert_eq!(choose_slot(&[0, 1, 2], &fed, &used, &[1, 2, 3, 4, 5, 7]), 0);
        // Only the BOS in common: the least recently used (never used) slot 2, not slot 0.
        assert_eq!(choose_slot(&[0, 1, 2, 3], &fed, &used, &[1, 7, 7, 7]), 2);
        assert_eq!(choose_slot(&[0, 1, 3], &fed, &used, &[1, 7, 7, 7]), 1);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
