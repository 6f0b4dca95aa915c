//! The slots: engines (each with its own KV cache, all over the one shared model) taking jobs
//! from the queue. On the CPU engine one thread drives every slot and decodes the busy ones
//! together, one pass over the weights per step (`CpuEngine::feed_pending_batch`); on the Vulkan
//! engine one thread drives every slot over one upload of the weights and batches their decode
//! the same way (`VulkanSlots::feed_pending`); other
//! engines get a thread per slot, each decoding alone. Either way a job runs the same steps as
//! `session::generate` (so greedy output equals `pigpu run`'s), checking after every token
//! whether its client is still there. A job constrained to JSON (`response_format`) samples on
//! the host instead, as `session::generate_with` does: it feeds its last token alone, reads the
//! logits back and masks them, so it does not share the batched pass.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::metrics::{Metrics, Outcome};
use super::slots::{Done, Event, Finish, Job, Queue};
use crate::engine::cpu::CpuEngine;
use crate::engine::vulkan::VulkanSlots;
use crate::engine::Engine;
use crate::model::sampler::{self, Rng};
use crate::model::tokenizer::{StreamDecoder, Tokenizer};
use crate::session::constrain::{JsonConstraint, TokenTrie, Top};
use crate::session::stop::StopText;

/// How slots get their engines.
pub enum Engines {
    /// CPU engines (one per slot) decoded in batches by one thread.
    CpuBatched(Box<dyn Fn(usize) -> anyhow::Result<CpuEngine> + Send + Sync>),
    /// Vulkan slots over one weight upload, built (given the number of slots) and driven by one
    /// thread.
    VulkanShared(Box<dyn FnOnce(usize) -> anyhow::Result<VulkanSlots> + Send>),
    /// Any engine, one thread per slot (engines need not be `Send`: each is built on its
    /// slot's thread).
    PerSlot(Arc<dyn Fn(usize) -> anyhow::Result<Box<dyn Engine>> + Send + Sync>),
}

/// A set of engines driven by one thread.
trait SlotSet {
    fn len(&self) -> usize;
    fn engine(&mut self, i: usize) -> &mut dyn Engine;
    /// Feeds the pending tokens of the slots `busy` (all of them at once where the engine can).
    fn feed_pending(&mut self, busy: &[usize]) -> anyhow::Result<()>;
}

struct CpuSet(Vec<CpuEngine>);

impl SlotSet for CpuSet {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn engine(&mut self, i: usize) -> &mut dyn Engine {
        &mut self.0[i]
    }
    fn feed_pending(&mut self, busy: &[usize]) -> anyhow::Result<()> {
        let mut refs: Vec<&mut CpuEngine> = self
            .0
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| busy.contains(i))
            .map(|(_, e)| e)
            .collect();
        CpuEngine::feed_pending_batch(&mut refs)
    }
}

impl SlotSet for VulkanSlots {
    fn len(&self) -> usize {
        VulkanSlots::len(self)
    }
    fn engine(&mut self, i: usize) -> &mut dyn Engine {
        VulkanSlots::engine(self, i)
    }
    fn feed_pending(&mut self, busy: &[usize]) -> anyhow::Result<()> {
        VulkanSlots::feed_pending(self, busy)
    }
}

/// Builds the slot set of one driving thread; returns it with what runs (for the log).
type BuildSet = Box<dyn FnOnce() -> anyhow::Result<(Box<dyn SlotSet>, String)> + Send>;

struct OneSet(Box<dyn Engine>);

impl SlotSet for OneSet {
    fn len(&self) -> usize {
        1
    }
    fn engine(&mut self, _: usize) -> &mut dyn Engine {
        self.0.as_mut()
    }
    fn feed_pending(&mut self, _: &[usize]) -> anyhow::Result<()> {
        // `step` feeds the pending token itself.
        Ok(())
    }
}

/// Starts `n` slots and waits until each has its engine; returns the threads and what runs (for
/// the log). On failure the queue is closed and the first error returned.
pub fn start(
    n: usize,
    engines: Engines,
    tokenizer: Arc<Tokenizer>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Vec<JoinHandle<()>>, String)> {
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<String>>();
    let mut handles = Vec::new();
    let spawn =
        |name: String, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name).spawn(f);
    let one_thread = |build: BuildSet| -> anyhow::Result<JoinHandle<()>> {
        let (tok, q, m, tx) = (
            tokenizer.clone(),
            queue.clone(),
            metrics.clone(),
            tx.clone(),
        );
        Ok(spawn(
            "slots".into(),
            Box::new(move || match build() {
                Ok((mut set, describe)) => {
                    let _ = tx.send(Ok(describe));
                    drop(tx);
                    drive(set.as_mut(), &q, &tok, &m);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }),
        )?)
    };
    match engines {
        Engines::CpuBatched(factory) => {
            handles.push(one_thread(Box::new(move || {
                let v = (0..n).map(&factory).collect::<anyhow::Result<Vec<_>>>()?;
                let d = format!("{}, decode batched", v[0].describe());
                Ok((Box::new(CpuSet(v)) as Box<dyn SlotSet>, d))
            }))?);
            drop(tx);
            recv(&rx, 1, &queue)
        }
        Engines::VulkanShared(factory) => {
            handles.push(one_thread(Box::new(move || {
                let mut v = factory(n)?;
                let d = format!("{}, weights shared, decode batched", v.engine(0).describe());
                Ok((Box::new(v) as Box<dyn SlotSet>, d))
            }))?);
            drop(tx);
            recv(&rx, 1, &queue)
        }
        Engines::PerSlot(factory) => {
            for i in 0..n {
                let (f, tok, q, m, tx) = (
                    factory.clone(),
                    tokenizer.clone(),
                    queue.clone(),
                    metrics.clone(),
                    tx.clone(),
                );
                handles.push(spawn(
                    format!("slot-{i}"),
                    Box::new(move || match f(i) {
                        Ok(e) => {
                            let _ = tx.send(Ok(e.describe()));
                            drop(tx);
                            drive(&mut OneSet(e), &q, &tok, &m);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.context(format!("slot {i}"))));
                        }
                    }),
                )?);
            }
            drop(tx);
            recv(&rx, n, &queue)
        }
    }
    .map(|d| (handles, d))
}

/// Waits for `n` start reports.
fn recv(
    rx: &std::sync::mpsc::Receiver<anyhow::Result<String>>,
    n: usize,
    queue: &Queue,
) -> anyhow::Result<String> {
    let mut describe = String::new();
    for _ in 0..n {
        match rx.recv() {
            Ok(Ok(d)) => describe = d,
            Ok(Err(e)) => {
                queue.close();
                return Err(e);
            }
            Err(_) => {
                queue.close();
                anyhow::bail!("a slot thread ended before building its engine");
            }
        }
    }
    Ok(describe)
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
    queued: std::time::Duration,
    prompt_time: std::time::Duration,
    gen_start: Instant,
}

/// What a slot's job does after a step.
enum Next {
    Continue,
    /// A stop string was found: the job is done.
    StopString,
    End(Outcome),
}

/// The slots' loop: take jobs into free slots, then step every busy slot, until the queue is
/// closed and every slot is idle.
fn drive(set: &mut dyn SlotSet, queue: &Queue, tok: &Tokenizer, metrics: &Metrics) {
    let mut slots: Vec<Option<Active<'_>>> = (0..set.len()).map(|_| None).collect();
    // The vocabulary's trie, built when the first JSON job arrives.
    let mut trie: Option<Arc<TokenTrie>> = None;
    loop {
        // Fill free slots: wait for a job only when nothing is running.
        for i in 0..slots.len() {
            if slots[i].is_some() {
                continue;
            }
            let idle = slots.iter().all(Option::is_none);
            let job = if idle { queue.pop() } else { queue.try_pop() };
            let Some(job) = job else {
                if idle {
                    return; // closed and empty
                }
                break;
            };
            metrics.busy_slots.fetch_add(1, Ordering::Relaxed);
            match begin(set.engine(i), job, tok, &mut trie) {
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
        if let Err(e) = set.feed_pending(&busy) {
            for &i in &busy {
                let a = slots[i].take().unwrap();
                let _ = a.job.events.send(Event::Failed(format!("{e:#}")));
                release(metrics, Outcome::Failed);
            }
            continue;
        }
        for &i in &busy {
            let a = slots[i].as_mut().unwrap();
            let next = step(set.engine(i), a, tok, metrics);
            let o = match next {
                Next::Continue => continue,
                Next::StopString => finish(slots[i].take().unwrap(), Finish::Stop, true, metrics),
                Next::End(Outcome::Ok) => {
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

fn release(metrics: &Metrics, o: Outcome) {
    metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
    metrics.request(o);
}

/// Starts a job in a slot: empty the cache, prefill the prompt.
fn begin<'t>(
    engine: &mut dyn Engine,
    job: Job,
    tok: &'t Tokenizer,
    trie: &mut Option<Arc<TokenTrie>>,
) -> Result<Active<'t>, Outcome> {
    if job.events.is_closed() {
        return Err(Outcome::Cancelled);
    }
    let json = job.json.then(|| {
        let trie = trie.get_or_insert_with(|| Arc::new(TokenTrie::new(tok)));
        (
            JsonConstraint::new(trie.clone(), Top::Object),
            job.prompt.clone(),
        )
    });
    let queued = job.queued_at.elapsed();
    engine.reset();
    let t0 = Instant::now();
    if let Err(e) = engine.prefill(&job.prompt) {
        let _ = job.events.send(Event::Failed(format!("{e:#}")));
        return Err(Outcome::Failed);
    }
    Ok(Active {
        rng: Rng::new(job.seed),
        stop: StopText::new(job.stop.clone()),
        dec: StreamDecoder::new(tok, false),
        json,
        tokens: 0,
        queued,
        prompt_time: t0.elapsed(),
        gen_start: Instant::now(),
        job,
    })
}

/// One token for a busy slot (its pending token was fed already).
fn step(engine: &mut dyn Engine, a: &mut Active<'_>, tok: &Tokenizer, metrics: &Metrics) -> Next {
    let u = a.rng.next_f32();
    let sampled = match a.json.as_mut() {
        None => engine.step(&a.job.params, u).map_err(anyhow::Error::from),
        Some((c, history)) => host_step(engine, c, history, a.tokens > 0, &a.job, u, tok),
    };
    let t = match sampled {
        Ok(t) => t,
        Err(e) => {
            let _ = a.job.events.send(Event::Failed(format!("{e:#}")));
            return Next::End(Outcome::Failed);
        }
    };
    if tok.is_eog(t) {
        return Next::End(Outcome::Ok);
    }
    a.tokens += 1;
    metrics.token();
    let (out, hit) = a.stop.push(&a.dec.push(t));
    if (!out.is_empty() && a.job.events.send(Event::Text(out)).is_err()) || a.job.events.is_closed()
    {
        return Next::End(Outcome::Cancelled);
    }
    if hit {
        return Next::StopString;
    }
    if a.json.as_ref().is_some_and(|(c, _)| c.is_done()) {
        return Next::End(Outcome::Ok);
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
fn finish(mut a: Active<'_>, f: Finish, hit: bool, metrics: &Metrics) -> Outcome {
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
            let _ = a.job.events.send(Event::Text(out));
        }
    }
    let done = Done {
        finish,
        prompt_tokens: a.job.prompt.len(),
        completion_tokens: a.tokens,
        queued: a.queued,
        prompt_time: a.prompt_time,
        gen_time,
    };
    if a.job.events.send(Event::Done(done)).is_err() {
        return Outcome::Cancelled;
    }
    Outcome::Ok
}
