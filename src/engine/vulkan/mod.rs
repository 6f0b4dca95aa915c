//! The Vulkan engine: pigpu's GPU runtime. The only module that imports `ash`; the Vulkan loader
//! is opened at run time, so pigpu (and its CPU engine) works on machines without one.
//!
//! Files by noun, bottom up (each imports only files listed before it): `error`, `tuning`
//! (every knob, resolved by the command layer), `options` (how to open an engine), `shaders`
//! (the compiled SPIR-V), `instance` (loader, validation), `features`, `choices` (every default
//! that depends on the device kind, or on the kind `PIGPU_VK_AS` names), `device` (choice), `shapes`
//! (workgroup shapes fitted to the device), `buffer` (memory), `pipeline` (layouts, pipeline
//! cache, descriptors), `command` (recording, submits, the timed recording's labels), `kernels`
//! (shader variants, binding layouts), `attention` (the split decode attention), `tiled` (the
//! prompt mat-mat's tile shapes), `upload`, `ops` (`GpuOp`: dispatches with their descriptor
//! sets written once), `weights`, `norms`, `profile` (per-op GPU timing), `layer` (a layer's
//! ops, built and recorded the same way for one engine and for serve's slots), `graph` (the
//! forward pass as ops), `memory` (the check before upload), `shared` (what the engines of one
//! model share), `engine`, `batch` (serve's slots over one weight upload). See docs/vulkan.md
//! for the design.

mod attention;
mod batch;
mod buffer;
mod choices;
mod command;
mod device;
mod engine;
mod error;
mod features;
mod graph;
mod instance;
mod kernels;
mod layer;
mod memory;
mod norms;
mod ops;
mod options;
mod pipeline;
mod profile;
mod shaders;
mod shapes;
mod shared;
mod tiled;
mod tuning;
mod upload;
mod weights;

#[cfg(test)]
mod tests;

pub use batch::{BatchStats, VulkanSlots};
pub use choices::Choices;
pub use device::{list_devices_with, DeviceInfo, DeviceKind};
pub use engine::VulkanEngine;
pub use error::VkError;
pub use kernels::state_after;
pub use options::VulkanOptions;
pub use profile::{PhaseReport, Profile};
pub use shared::SharedWeights;
pub use tuning::{TiledKernel, Tuning, TuningError};
