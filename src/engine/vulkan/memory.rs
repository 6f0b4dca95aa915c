//! The device-memory check, run right after the device is chosen and before any upload: the
//! weights as they will be uploaded, the f16 KV cache at the context asked for and the
//! activation buffers, against the device-local heap (what VK_EXT_memory_budget says is left
//! of it, when the driver has the extension; `PIGPU_VK_MEM_LIMIT` caps it), less what pigpu
//! has allocated there already (a further engine over shared weights counts its own cache and
//! scratch against what is left). The rule itself is `engine::fit`; docs/vulkan.md "Memory
//! check".

use ash::vk;

use super::attention::Splits;
use super::device::Device;
use super::error::{Result, VkError};
use super::graph::{act_bytes_per_token, ubatch_for};
use super::kernels::sample_id_words;
use super::upload::CHUNK;
use crate::engine::fit::{self, Need};
use crate::model::Model;

/// Allowance per uploaded tensor for allocation granularity (drivers round allocations up to
/// pages; 64 KiB is the coarsest alignment NVIDIA reports for storage buffers).
const PER_TENSOR_SLACK: u64 = 64 << 10;

/// The largest device-local heap of `memory`: (its index, its size).
fn device_heap(memory: &vk::PhysicalDeviceMemoryProperties) -> Option<(usize, u64)> {
    memory.memory_heaps[..memory.memory_heap_count as usize]
        .iter()
        .enumerate()
        .filter(|(_, h)| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .map(|(i, h)| (i, h.size))
        .max_by_key(|&(_, size)| size)
}

/// Bytes of device memory still free for the engine, and how to name it in a refusal.
fn available(dev: &Device) -> (u64, String) {
    let Some((heap, size)) = device_heap(&dev.memory) else {
        return (0, format!("device-local memory on {}", dev.info.name));
    };
    let own = dev.device_local_bytes();
    let mut avail = size.saturating_sub(own);
    let mut place = format!("device memory on {}", dev.info.name);
    // SAFETY: a query on the live instance about one of its physical devices.
    let exts = unsafe {
        dev.instance
            .raw
            .enumerate_device_extension_properties(dev.physical)
    }
    .unwrap_or_default();
    let has_budget = exts
        .iter()
        .any(|e| e.extension_name_as_c_str().ok() == Some(vk::EXT_MEMORY_BUDGET_NAME));
    if has_budget {
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: as above; the budget struct is chained only when the device has the
        // extension, and both structs live on the stack for the call.
        unsafe {
            dev.instance
                .raw
                .get_physical_device_memory_properties2(dev.physical, &mut props)
        };
        // The usage is this process's, pigpu's own buffers included.
        let left = budget.heap_budget[heap].saturating_sub(budget.heap_usage[heap]);
        if left > 0 && left < avail {
            avail = left;
            place = format!("device memory left on {} (memory budget)", dev.info.name);
        }
    }
    if let Some(cap) = dev
        .tuning
        .mem_limit
        .map(|cap| cap.saturating_sub(own))
        .filter(|&cap| cap < avail)
    {
        avail = cap;
        place = format!("device memory on {} (PIGPU_VK_MEM_LIMIT)", dev.info.name);
    }
    (avail, place)
}

/// What the engine will allocate on `dev` for `model` at `n_ctx` positions (`weights`: the
/// weights too, else they are on the device already).
fn need(dev: &Device, model: &Model, n_ctx: usize, weights: bool) -> Need {
    let c = &model.config;
    // Matrices go up as stored; vectors (norms, biases) are widened to f32.
    let tensors = model.weights.all();
    let weight_bytes: u64 = tensors
        .iter()
        .map(|w| {
            let bytes = if w.shape.iter().filter(|&&d| d > 1).count() > 1 {
                w.bytes
            } else {
                4 * w.shape.iter().product::<u64>()
            };
            bytes + PER_TENSOR_SLACK
        })
        .sum();
    let ub = ubatch_for(dev, c) as u64;
    let row = 4 * c.n_vocab as u64;
    let logits_rows = ub.min(dev.max_binding().min(256 << 20) / row.max(1));
    let per_token = act_bytes_per_token(dev, c);
    let parts = 4 * Splits::for_context(dev, n_ctx)
        .map_or(1, |s| s.part_floats(c.n_head, c.head_dim)) as u64;
    Need {
        weights: if weights { weight_bytes } else { 0 },
        kv_per_pos: fit::kv_per_pos(c, 2),
        // Activations, logits rows, the sampler's candidates (logits and ids), the attention
        // partials, and the staging buffer the upload streams through (host memory on a
        // discrete GPU, the same memory on lavapipe and integrated GPUs: counted either way).
        scratch: per_token * ub
            + (logits_rows + 1) * row
            + 4 * sample_id_words(c.n_vocab) as u64
            + parts
            + CHUNK,
        n_ctx,
    }
}

/// Refuses, with the numbers, a model that will not fit on `dev` at `n_ctx` positions
/// (`weights`: its weights are still to be uploaded).
pub fn check(dev: &Device, model: &Model, n_ctx: usize, weights: bool) -> Result<()> {
    let need = need(dev, model, n_ctx, weights);
    let (avail, place) = available(dev);
    log::debug!(
        "vulkan: the model needs {} (weights {}, KV {}, scratch {}) of {} of {place}",
        fit::size(need.total()),
        fit::size(need.weights),
        fit::size(need.kv()),
        fit::size(need.scratch),
        fit::size(avail)
    );
    fit::check(&need, avail, &place).map_err(|r| VkError::DoesNotFit(Box::new(r)))
}
