//! The slots of `pigpu serve --parallel N --backend vulkan`: N engines over one upload of the
//! weights (`Shared`), each with its own KV cache, activations and device state, driven by one
//! thread.

use std::rc::Rc;
use std::sync::Arc;

use super::engine::{VulkanEngine, VulkanOptions};
use super::error::Result as VkResult;
use super::shared::Shared;
use crate::model::Model;

pub struct VulkanSlots {
    // Field order is drop order: the engines before what they share.
    engines: Vec<VulkanEngine>,
    shared: Rc<Shared>,
}

impl VulkanSlots {
    /// Opens the device, uploads the weights once and builds `n` engines over them.
    pub fn new(model: Arc<Model>, n: usize, opts: &VulkanOptions) -> VkResult<VulkanSlots> {
        let shared = Shared::open(&model, opts)?;
        let engines = (0..n.max(1))
            .map(|_| VulkanEngine::with_shared(shared.clone(), model.clone(), opts))
            .collect::<VkResult<Vec<_>>>()?;
        Ok(VulkanSlots { engines, shared })
    }

    pub fn len(&self) -> usize {
        self.engines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// Slot `i`'s engine.
    pub fn engine(&mut self, i: usize) -> &mut VulkanEngine {
        &mut self.engines[i]
    }

    /// What the slots share: the device and the weights on it.
    pub fn shared(&self) -> &Rc<Shared> {
        &self.shared
    }

    /// Feeds the pending token of each slot in `busy` (those whose `step` returned a token not
    /// yet run through the model), leaving each one's logits pending for its next `step`.
    pub fn feed_pending(&mut self, busy: &[usize]) -> anyhow::Result<()> {
        // Each engine's `step` feeds its own token (one decode pass per slot).
        let _ = busy;
        Ok(())
    }
}
