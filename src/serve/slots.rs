//! The bounded queue of jobs waiting for a slot, and what a job sends back. A job streams its
//! text back over a channel; when the client goes away the channel closes, a queued job gives up
//! its place and a running one stops at its next token (see `schedule`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::SamplingParams;

/// One request's work.
#[derive(Debug)]
pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub params: SamplingParams,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Sampling constrained to a JSON object (`response_format: json_object`).
    pub json: bool,
    /// Whether the prompt may start from tokens already in the slot's cache (llama-server's
    /// `cache_prompt`; default true).
    pub cache_prompt: bool,
    pub events: UnboundedSender<JobEvent>,
    pub queued_at: Instant,
}

/// Why a completion ended, as OpenAI's `finish_reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// The figures of a finished job.
#[derive(Debug, Clone)]
pub struct Done {
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, how many were already in the slot's cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub queued: Duration,
    pub prompt_time: Duration,
    pub gen_time: Duration,
}

/// What a slot sends back while working on a job.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// More text (never part of a stop string).
    Text(String),
    Done(Done),
    /// The engine failed; the job is over.
    Failed(String),
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Full,
    Closed,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Jobs waiting for a slot, at most `capacity` of them.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a job unless the queue is full or closed.
    pub fn push(&self, job: Job) -> Result<(), QueueError> {
        let mut s = self.lock();
        if s.closed {
            return Err(QueueError::Closed);
        }
        // Jobs whose client already left do not hold places.
        s.jobs.retain(|j| !j.events.is_closed());
        if s.jobs.len() >= self.capacity {
            return Err(QueueError::Full);
        }
        s.jobs.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job if one is waiting.
    pub fn try_pop(&self) -> Option<Job> {
        self.lock().jobs.pop_front()
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub fn pop(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if let Some(j) = s.jobs.pop_front() {
                return Some(j);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Refuses new jobs; workers finish what is queued and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn depth(&self) -> usize {
        self.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (Job, tokio::sync::mpsc::UnboundedReceiver<JobEvent>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let j = Job {
            prompt: vec![1],
            max_tokens: 1,
            params: SamplingParams::greedy(),
            seed: 0,
            stop: vec![],
            json: false,
            cache_prompt: true,
            events: tx,
            queued_at: Instant::now(),
        };
        (j, rx)
    }

    #[test]
    fn queue_is_bounded_and_skips_abandoned_jobs() {
        let q = Queue::new(2);
        let (a, _ra) = job();
        let (b, rb) = job();
        let (c, _rc) = job();
        q.push(a).unwrap();
        q.push(b).unwrap();
        let (d, _rd) = job();
        assert_eq!(q.push(d).unwrap_err(), QueueError::Full);
        // b's client leaves: its place is freed for c.
        drop(rb);
        q.push(c).unwrap();
        assert_eq!(q.depth(), 2);
        q.close();
        let (e, _re) = job();
        assert_eq!(q.push(e).unwrap_err(), QueueError::Closed);
        assert!(q.pop().is_some() && q.pop().is_some());
        assert!(q.pop().is_none(), "closed and empty: workers stop");
    }
}
