//! `EngineError`: what the engine boundary returns, engine-neutral, so callers (the CPU fallback,
//! the server, the commands) match on what happened instead of looking for one engine's types.
//! Each case keeps the message (and cause chain) the engine wrote, so users read the same text.

use super::fit::Refusal;

/// What went wrong at the engine boundary; the CPU fallback matches on it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The GPU stopped working: the device was lost (driver crash, reset) or a submit hung.
    #[error(transparent)]
    DeviceLost(anyhow::Error),
    /// The device ran out of memory while the engine was allocating or running.
    #[error(transparent)]
    OutOfMemory(anyhow::Error),
    /// Any other failed GPU call: the device is in an unknown state, so it is a GPU failure too.
    #[error(transparent)]
    Gpu(anyhow::Error),
    /// The caller's mistake: a token id outside the vocabulary, an empty prompt, a step before
    /// any prefill, a request the engine does not serve.
    #[error("{0}")]
    BadInput(String),
    /// The tokens do not fit in the context the KV cache was sized for.
    #[error("{0}")]
    ContextFull(String),
    /// Refused before loading: the model and its KV cache do not fit in the memory there is.
    #[error(transparent)]
    DoesNotFit(Box<Refusal>),
    /// The model computed logits that are NaN or infinite (broken weights or hyper-parameters):
    /// sampling from them would give garbage, so generation stops, naming the position.
    #[error("the model computed {what} logits at position {position}: its weights or hyper-parameters are not usable (a broken or mis-converted file?)")]
    NonFinite {
        /// Tokens in the KV cache when the logits were computed.
        position: usize,
        /// `NaN` or `infinite`.
        what: &'static str,
    },
    /// Anything else (a CPU engine that cannot start, an I/O error).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl EngineError {
    /// Whether this is the GPU failing (lost, out of memory, a failed call), which `--backend
    /// auto` survives by moving to the CPU, as opposed to bad input or a full context.
    pub fn is_gpu_failure(&self) -> bool {
        matches!(
            self,
            EngineError::DeviceLost(_) | EngineError::OutOfMemory(_) | EngineError::Gpu(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_chains_are_the_engines_own() {
        let inner = anyhow::anyhow!("vulkan: the device was lost").context("waiting for a step");
        let e = EngineError::DeviceLost(inner);
        assert_eq!(e.to_string(), "waiting for a step");
        let chained = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chained, "waiting for a step: vulkan: the device was lost");
        let e = EngineError::ContextFull("the context (8 tokens) is full".into());
        assert_eq!(e.to_string(), "the context (8 tokens) is full");
    }

    #[test]
    fn only_gpu_cases_are_gpu_failures() {
        let a = || anyhow::anyhow!("x");
        assert!(EngineError::DeviceLost(a()).is_gpu_failure());
        assert!(EngineError::OutOfMemory(a()).is_gpu_failure());
        assert!(EngineError::Gpu(a()).is_gpu_failure());
        assert!(!EngineError::BadInput("x".into()).is_gpu_failure());
        assert!(!EngineError::ContextFull("x".into()).is_gpu_failure());
        assert!(!EngineError::Other(a()).is_gpu_failure());
    }
}
