//! Compute pipelines: shader modules, descriptor-set and pipeline layouts (shared between kernels
//! with the same binding shape, so one descriptor set serves several variants), specialization
//! constants, the persistent on-disk VkPipelineCache, and the descriptor arena.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ash::vk;

use super::buffer::BufRange;
use super::device::Device;
use super::error::{vkerr, Result, VkError};

/// A descriptor-set layout (storage buffers; binding `i` is an array of `counts[i]`) and the
/// pipeline layout built from it with `push_words` words of push constants.
pub struct Layout {
    dev: Arc<Device>,
    pub counts: Vec<u32>,
    pub set_layout: vk::DescriptorSetLayout,
    pub pipeline_layout: vk::PipelineLayout,
}

impl Layout {
    fn new(dev: &Arc<Device>, counts: &[u32], push_words: u32) -> Result<Layout> {
        let bindings: Vec<vk::DescriptorSetLayoutBinding> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(n)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        // SAFETY: valid create infos; destroyed in Drop.
        unsafe {
            let set_layout = dev
                .raw
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                    None,
                )
                .map_err(vkerr("vkCreateDescriptorSetLayout"))?;
            let ranges = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .offset(0)
                .size(push_words * 4)];
            let sls = [set_layout];
            let mut pli = vk::PipelineLayoutCreateInfo::default().set_layouts(&sls);
            if push_words > 0 {
                pli = pli.push_constant_ranges(&ranges);
            }
            let pipeline_layout = match dev.raw.create_pipeline_layout(&pli, None) {
                Ok(l) => l,
                Err(e) => {
                    dev.raw.destroy_descriptor_set_layout(set_layout, None);
                    return Err(VkError::from_vk("vkCreatePipelineLayout", e));
                }
            };
            Ok(Layout {
                dev: dev.clone(),
                counts: counts.to_vec(),
                set_layout,
                pipeline_layout,
            })
        }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: no pipeline using it remains (kernels hold an Arc of the layout).
        unsafe {
            self.dev
                .raw
                .destroy_pipeline_layout(self.pipeline_layout, None);
            self.dev
                .raw
                .destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

/// Binding array sizes and push-constant words: layouts with the same key are shared.
type LayoutKey = (Vec<u32>, u32);

/// The pipeline cache, loaded from and saved to `~/.cache/pigpu/` (keyed by the device's
/// pipeline-cache UUID, so a driver update starts a fresh file) so later runs skip shader
/// compilation.
pub struct PipelineCache {
    dev: Arc<Device>,
    raw: vk::PipelineCache,
    path: Option<PathBuf>,
    layouts: std::cell::RefCell<HashMap<LayoutKey, Arc<Layout>>>,
}

fn cache_path(dev: &Device) -> Option<PathBuf> {
    // `Tuning::pipeline_cache`: resolved by the command layer; `None` turns the cache off.
    let base = dev.tuning.pipeline_cache.clone()?;
    // SAFETY: property query on a live physical device.
    let props = unsafe {
        dev.instance
            .raw
            .get_physical_device_properties(dev.physical)
    };
    let uuid: String = props
        .pipeline_cache_uuid
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(base.join(format!(
        "pipelines-{:04x}-{:04x}-{uuid}.bin",
        props.vendor_id, props.device_id
    )))
}

impl PipelineCache {
    pub fn new(dev: &Arc<Device>) -> Result<PipelineCache> {
        let path = cache_path(dev);
        let data = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let info = vk::PipelineCacheCreateInfo::default().initial_data(&data);
        // SAFETY: drivers validate the cache header and ignore data from another device/driver.
        let raw = match unsafe { dev.raw.create_pipeline_cache(&info, None) } {
            Ok(c) => c,
            // A corrupt file: start empty rather than fail.
            Err(_) => unsafe {
                dev.raw
                    .create_pipeline_cache(&vk::PipelineCacheCreateInfo::default(), None)
            }
            .map_err(vkerr("vkCreatePipelineCache"))?,
        };
        Ok(PipelineCache {
            dev: dev.clone(),
            raw,
            path,
            layouts: Default::default(),
        })
    }

    fn layout(&self, counts: &[u32], push_words: u32) -> Result<Arc<Layout>> {
        let key = (counts.to_vec(), push_words);
        if let Some(l) = self.layouts.borrow().get(&key) {
            return Ok(l.clone());
        }
        let l = Arc::new(Layout::new(&self.dev, counts, push_words)?);
        self.layouts.borrow_mut().insert(key, l.clone());
        Ok(l)
    }

    /// Writes the cache to disk (best effort: a read-only home only costs compile time later).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        // SAFETY: querying the cache's data from a live device.
        let Ok(data) = (unsafe { self.dev.raw.get_pipeline_cache_data(self.raw) }) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, &data).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

impl Drop for PipelineCache {
    fn drop(&mut self) {
        self.save();
        // SAFETY: pipelines created from it keep working without it.
        unsafe { self.dev.raw.destroy_pipeline_cache(self.raw, None) };
    }
}

/// One compute pipeline.
pub struct GpuKernel {
    dev: Arc<Device>,
    pub name: String,
    pub layout: Arc<Layout>,
    pub pipeline: vk::Pipeline,
    /// The specialization constants it was built with.
    pub spec: Vec<u32>,
}

impl GpuKernel {
    /// Builds `spirv` with binding array sizes `counts`, `push_words` words of push constants and
    /// specialization constants 0..n = `spec`; with `full_subgroups` the pipeline requires full
    /// subgroups (`computeFullSubgroups` must be enabled and the workgroup a multiple of the
    /// largest subgroup size).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &Arc<Device>,
        cache: &PipelineCache,
        name: &str,
        spirv: &[u8],
        counts: &[u32],
        push_words: u32,
        spec: &[u32],
        full_subgroups: bool,
    ) -> Result<GpuKernel> {
        let layout = cache.layout(counts, push_words)?;
        let code = ash::util::read_spv(&mut std::io::Cursor::new(spirv))
            .map_err(|_| VkError::Unsupported(format!("shader {name}: malformed SPIR-V")))?;
        let entries: Vec<vk::SpecializationMapEntry> = (0..spec.len() as u32)
            .map(|i| vk::SpecializationMapEntry {
                constant_id: i,
                offset: i * 4,
                size: 4,
            })
            .collect();
        let spec_bytes: Vec<u8> = spec.iter().flat_map(|v| v.to_le_bytes()).collect();
        let si = vk::SpecializationInfo::default()
            .map_entries(&entries)
            .data(&spec_bytes);
        // SAFETY: valid SPIR-V produced by glslc at build time; the module is destroyed right
        // after pipeline creation, which is allowed.
        unsafe {
            let module = dev
                .raw
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)
                .map_err(vkerr("vkCreateShaderModule"))?;
            let flags = if full_subgroups {
                vk::PipelineShaderStageCreateFlags::REQUIRE_FULL_SUBGROUPS
            } else {
                vk::PipelineShaderStageCreateFlags::empty()
            };
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .flags(flags)
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main")
                .specialization_info(&si);
            let ci = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(layout.pipeline_layout)];
            let r = dev.raw.create_compute_pipelines(cache.raw, &ci, None);
            dev.raw.destroy_shader_module(module, None);
            let pipeline = r.map_err(|(_, e)| VkError::from_vk("vkCreateComputePipelines", e))?[0];
            Ok(GpuKernel {
                dev: dev.clone(),
                name: name.to_string(),
                layout,
                pipeline,
                spec: spec.to_vec(),
            })
        }
    }
}

impl Drop for GpuKernel {
    fn drop(&mut self) {
        // SAFETY: no command buffer using it is pending (the engine waits before dropping).
        unsafe { self.dev.raw.destroy_pipeline(self.pipeline, None) };
    }
}

/// A descriptor pool from which sets are allocated and written once; it counts the writes so
/// `Stats::descriptor_updates` is honest.
pub struct DescriptorArena {
    dev: Arc<Device>,
    pool: vk::DescriptorPool,
    pub updates: u64,
}

impl DescriptorArena {
    pub fn new(dev: &Arc<Device>, max_sets: u32, max_buffers: u32) -> Result<DescriptorArena> {
        let sizes = [vk::DescriptorPoolSize {
            ty: vk::DescriptorType::STORAGE_BUFFER,
            descriptor_count: max_buffers,
        }];
        let info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(max_sets)
            .pool_sizes(&sizes);
        // SAFETY: valid create info; destroyed in Drop.
        let pool = unsafe { dev.raw.create_descriptor_pool(&info, None) }
            .map_err(vkerr("vkCreateDescriptorPool"))?;
        Ok(DescriptorArena {
            dev: dev.clone(),
            pool,
            updates: 0,
        })
    }

    /// Allocates a set for `kernel` and writes `bindings[i]` (one range per array element;
    /// missing array elements repeat the last range, so unused segments stay valid).
    pub fn set(
        &mut self,
        kernel: &GpuKernel,
        bindings: &[&[BufRange]],
    ) -> Result<vk::DescriptorSet> {
        let counts = &kernel.layout.counts;
        assert_eq!(
            bindings.len(),
            counts.len(),
            "kernel {}: binding count",
            kernel.name
        );
        let sls = [kernel.layout.set_layout];
        let ai = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(self.pool)
            .set_layouts(&sls);
        // SAFETY: the pool outlives the set (sets are freed with the pool).
        let set = unsafe { self.dev.raw.allocate_descriptor_sets(&ai) }
            .map_err(vkerr("vkAllocateDescriptorSets"))?[0];
        let infos: Vec<Vec<vk::DescriptorBufferInfo>> = bindings
            .iter()
            .zip(counts)
            .map(|(ranges, &n)| {
                (0..n as usize)
                    .map(|i| {
                        let r = ranges[i.min(ranges.len() - 1)];
                        vk::DescriptorBufferInfo {
                            buffer: r.buffer,
                            offset: r.offset,
                            range: r.len,
                        }
                    })
                    .collect()
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet> = infos
            .iter()
            .enumerate()
            .map(|(i, inf)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(inf)
            })
            .collect();
        // SAFETY: the set is not in use by any pending command buffer (fresh).
        unsafe { self.dev.raw.update_descriptor_sets(&writes, &[]) };
        self.updates += 1;
        Ok(set)
    }
}

impl Drop for DescriptorArena {
    fn drop(&mut self) {
        // SAFETY: no pending command buffer uses its sets (the engine waits first).
        unsafe { self.dev.raw.destroy_descriptor_pool(self.pool, None) };
    }
}
