//! What the engines of one model on one device share: the device, the weights (uploaded once)
//! and the kernels (pipelines). `pigpu serve --parallel N` builds N engines over one
//! `SharedWeights`, so the weights sit on the device once whatever N is; each engine keeps its
//! own KV cache, activations, device state and command buffers.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::device::Device;
use super::error::Result;
use super::kernels::Kernels;
use super::options::VulkanOptions;
use super::weights::{self, GpuWeights};
use crate::model::Model;
use crate::sys::progress::Reporter;

/// The device-wide part of an engine: the weights on the device, with the device and the
/// kernels that go with them. `Rc`, not `Arc`: the kernels cache pipelines in a
/// `RefCell`, so the engines sharing them live on one thread (serve drives its Vulkan slots
/// from one thread for this reason and to batch them).
pub struct SharedWeights {
    pub(super) weights: GpuWeights,
    /// Owns the pipelines (and saves the pipeline cache when dropped).
    pub(super) kernels: Kernels,
    pub(super) dev: Arc<Device>,
    /// Bytes uploaded for the weights (once, when this was built).
    pub upload_bytes: u64,
    /// Time the weight upload took (reading the memory map, staging, copy commands).
    pub upload_ns: u64,
}

impl SharedWeights {
    /// Opens the device `opts.tuning` names and uploads the weights of `model` to it.
    pub fn open(model: &Model, opts: &VulkanOptions) -> Result<Rc<SharedWeights>> {
        let dev = Device::open(&opts.tuning)?;
        // The first engine's KV cache and scratch counted with the weights, before the upload.
        super::memory::check(&dev, model, opts.n_ctx.max(1), true)?;
        Self::load(dev, model, &opts.progress)
    }

    /// Uploads the weights of `model` to `dev` (reporting the bytes done to `progress`) and
    /// builds its kernels' home.
    pub(super) fn load(
        dev: Arc<Device>,
        model: &Model,
        progress: &Reporter,
    ) -> Result<Rc<SharedWeights>> {
        let t = Instant::now();
        let (weights, upload_bytes) = weights::upload(&dev, model, progress)?;
        let upload_ns = t.elapsed().as_nanos() as u64;
        let kernels = Kernels::new(&dev)?;
        Ok(Rc::new(SharedWeights {
            weights,
            kernels,
            dev,
            upload_bytes,
            upload_ns,
        }))
    }

    /// Bytes of device-local memory allocated on this device now (weights, caches,
    /// activations of every engine on it); tests use it to see what a second engine adds.
    pub fn device_local_bytes(&self) -> u64 {
        self.dev.device_local_bytes()
    }
}
