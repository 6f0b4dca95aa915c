//! Compute pipelines: shader modules, descriptor-set and pipeline layouts (shared between kernels
//! with the same binding shape, so one descriptor set serves several variants), specialization
//! constants, the persistent on-disk VkPipelineCache, and the descriptor arena.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ash::vk;

use super::buffer::BufRange;
use super::device::Device;
use super::error::{vkerr, Result, VkError};

/// A descriptor-set layout (storage buffers, but from binding `texel` on, uniform texel buffers;
/// binding `i` is an array of `counts[i]`) and the pipeline layout built from it with
/// `push_words` words of push constants.
pub struct Layout {
    dev: Arc<Device>,
    pub counts: Vec<u32>,
    /// The first binding of `R32_UINT` uniform texel buffers (texel weights), if any: it and
    /// every later binding.
    pub texel: Option<u32>,
    pub set_layout: vk::DescriptorSetLayout,
    pub pipeline_layout: vk::PipelineLayout,
}

impl Layout {
    fn new(
        dev: &Arc<Device>,
        counts: &[u32],
        texel: Option<u32>,
        push_words: u32,
    ) -> Result<Layout> {
        let bindings: Vec<vk::DescriptorSetLayoutBinding> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i as u32)
                    .descriptor_type(descriptor_type(texel, i))
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
                texel,
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

/// The descriptor type of binding `i` of a layout whose texel bindings start at `texel`.
fn descriptor_type(texel: Option<u32>, i: usize) -> vk::DescriptorType {
    if is_texel(texel, i) {
        vk::DescriptorType::UNIFORM_TEXEL_BUFFER
    } else {
        vk::DescriptorType::STORAGE_BUFFER
    }
}

/// Whether binding `i` is a texel binding of a layout whose texel bindings start at `texel`.
fn is_texel(texel: Option<u32>, i: usize) -> bool {
    texel.is_some_and(|t| i as u32 >= t)
}

/// Binding array sizes, the first texel binding and push-constant words: layouts with the same key
/// are shared.
type LayoutKey = (Vec<u32>, Option<u32>, u32);

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

    fn layout(&self, counts: &[u32], texel: Option<u32>, push_words: u32) -> Result<Arc<Layout>> {
        let key = (counts.to_vec(), texel, push_words);
        if let Some(l) = self.layouts.borrow().get(&key) {
            return Ok(l.clone());
        }
        let l = Arc::new(Layout::new(&self.dev, counts, texel, push_words)?);
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

/// One compute pipeline. Its `vk::Pipeline` is created with it (`GpuKernel::new`), or later
/// together with others (`GpuKernel::unbuilt`, then `PipelineCache::create_all` and
/// `set_pipeline`: `Kernels::all_at_once`).
pub struct GpuKernel {
    dev: Arc<Device>,
    pub name: String,
    pub layout: Arc<Layout>,
    /// Null until created.
    pipeline: Cell<vk::Pipeline>,
    /// The specialization constants it was built with.
    pub spec: Vec<u32>,
}

/// What one compute pipeline is built from: `spirv` on `layout`, specialization constants
/// 0..n = `spec`; with `full_subgroups` it requires full subgroups (`computeFullSubgroups` must
/// be enabled and the workgroup a multiple of the largest subgroup size).
pub struct PipelineJob<'a> {
    pub name: &'a str,
    pub spirv: &'a [u8],
    pub layout: vk::PipelineLayout,
    pub spec: &'a [u32],
    pub full_subgroups: bool,
}

/// Creates the pipeline `job` describes through `cache` (a `VkPipelineCache` may be used from
/// several threads at once).
fn create_pipeline(
    raw: &ash::Device,
    cache: vk::PipelineCache,
    job: &PipelineJob<'_>,
) -> Result<vk::Pipeline> {
    let name = job.name;
    let code = ash::util::read_spv(&mut std::io::Cursor::new(job.spirv))
        .map_err(|_| VkError::Unsupported(format!("shader {name}: malformed SPIR-V")))?;
    let entries: Vec<vk::SpecializationMapEntry> = (0..job.spec.len() as u32)
        .map(|i| vk::SpecializationMapEntry {
            constant_id: i,
            offset: i * 4,
            size: 4,
        })
        .collect();
    let spec_bytes: Vec<u8> = job.spec.iter().flat_map(|v| v.to_le_bytes()).collect();
    let si = vk::SpecializationInfo::default()
        .map_entries(&entries)
        .data(&spec_bytes);
    // SAFETY: valid SPIR-V produced by glslc at build time; the module is destroyed right
    // after pipeline creation, which is allowed.
    unsafe {
        let module = raw
            .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)
            .map_err(vkerr("vkCreateShaderModule"))?;
        let flags = if job.full_subgroups {
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
            .layout(job.layout)];
        let r = raw.create_compute_pipelines(cache, &ci, None);
        raw.destroy_shader_module(module, None);
        Ok(r.map_err(|(_, e)| VkError::from_vk("vkCreateComputePipelines", e))?[0])
    }
}

impl PipelineCache {
    /// Creates the pipelines of `jobs` (results in their order) on up to `threads` threads at
    /// once: drivers compile in `vkCreateComputePipelines` (lavapipe its NIR, GPU drivers the
    /// whole shader), and each call compiles one pipeline on its calling thread.
    pub fn create_all(
        &self,
        jobs: &[PipelineJob<'_>],
        threads: usize,
    ) -> Vec<Result<vk::Pipeline>> {
        let threads = threads.clamp(1, jobs.len().max(1));
        let raw = &self.dev.raw;
        let cache = self.raw;
        if threads == 1 {
            return jobs
                .iter()
                .map(|j| create_pipeline(raw, cache, j))
                .collect();
        }
        // Each thread takes the next job not yet taken, so long compiles spread over threads.
        let next = AtomicUsize::new(0);
        let mut out: Vec<Option<Result<vk::Pipeline>>> = (0..jobs.len()).map(|_| None).collect();
        let done: Vec<Vec<(usize, Result<vk::Pipeline>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(job) = jobs.get(i) else { break };
                            mine.push((i, create_pipeline(raw, cache, job)));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in done.into_iter().flatten() {
            out[i] = Some(r);
        }
        // A job whose thread panicked (a driver fault) has no result: an error naming it.
        out.into_iter()
            .zip(jobs)
            .map(|(r, j)| {
                r.unwrap_or_else(|| {
                    Err(VkError::Unsupported(format!(
                        "creating the pipeline of shader {} (its thread stopped)",
                        j.name
                    )))
                })
            })
            .collect()
    }
}

impl GpuKernel {
    /// Builds `spirv` with binding array sizes `counts` (from binding `texel` on, if given,
    /// uniform texel buffers; storage buffers before), `push_words` words of push constants and
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
        texel: Option<u32>,
        push_words: u32,
        spec: &[u32],
        full_subgroups: bool,
    ) -> Result<GpuKernel> {
        let k = Self::unbuilt(dev, cache, name, counts, texel, push_words, spec)?;
        let job = PipelineJob {
            name,
            spirv,
            layout: k.layout.pipeline_layout,
            spec,
            full_subgroups,
        };
        k.set_pipeline(create_pipeline(&dev.raw, cache.raw, &job)?);
        Ok(k)
    }

    /// The kernel with its layout but no pipeline yet: `set_pipeline` must give it one before
    /// anything records it.
    pub fn unbuilt(
        dev: &Arc<Device>,
        cache: &PipelineCache,
        name: &str,
        counts: &[u32],
        texel: Option<u32>,
        push_words: u32,
        spec: &[u32],
    ) -> Result<GpuKernel> {
        Ok(GpuKernel {
            dev: dev.clone(),
            name: name.to_string(),
            layout: cache.layout(counts, texel, push_words)?,
            pipeline: Cell::new(vk::Pipeline::null()),
            spec: spec.to_vec(),
        })
    }

    /// Gives an unbuilt kernel its pipeline (which it then owns).
    pub fn set_pipeline(&self, p: vk::Pipeline) {
        debug_assert!(self.pipeline.get() == vk::Pipeline::null());
        self.pipeline.set(p);
    }

    /// The pipeline (null while unbuilt).
    pub fn pipeline(&self) -> vk::Pipeline {
        self.pipeline.get()
    }
}

impl Drop for GpuKernel {
    fn drop(&mut self) {
        // SAFETY: no command buffer using it is pending (the engine waits before dropping);
        // destroying a null pipeline (never built) does nothing.
        unsafe { self.dev.raw.destroy_pipeline(self.pipeline.get(), None) };
    }
}

/// A descriptor pool from which sets are allocated and written once; it counts the writes so
/// `Stats::descriptor_updates` is honest. It owns the texel-buffer views its sets refer to.
pub struct DescriptorArena {
    dev: Arc<Device>,
    pool: vk::DescriptorPool,
    views: Vec<vk::BufferView>,
    pub updates: u64,
}

impl DescriptorArena {
    /// A pool for `max_sets` sets of at most `max_buffers` storage buffers in all (and as many
    /// texel buffers where the device reads weights through them).
    pub fn new(dev: &Arc<Device>, max_sets: u32, max_buffers: u32) -> Result<DescriptorArena> {
        let mut sizes = vec![vk::DescriptorPoolSize {
            ty: vk::DescriptorType::STORAGE_BUFFER,
            descriptor_count: max_buffers,
        }];
        if dev.texel_weights() {
            sizes.push(vk::DescriptorPoolSize {
                ty: vk::DescriptorType::UNIFORM_TEXEL_BUFFER,
                descriptor_count: max_buffers,
            });
        }
        let info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(max_sets)
            .pool_sizes(&sizes);
        // SAFETY: valid create info; destroyed in Drop.
        let pool = unsafe { dev.raw.create_descriptor_pool(&info, None) }
            .map_err(vkerr("vkCreateDescriptorPool"))?;
        Ok(DescriptorArena {
            dev: dev.clone(),
            pool,
            views: Vec::new(),
            updates: 0,
        })
    }

    /// An `R32_UINT` view of `r` (whose offset and length are whole words), kept until the
    /// arena is dropped.
    fn view(&mut self, r: BufRange) -> Result<vk::BufferView> {
        let info = vk::BufferViewCreateInfo::default()
            .buffer(r.buffer)
            .format(vk::Format::R32_UINT)
            .offset(r.offset)
            .range(r.len & !3);
        // SAFETY: the buffer was created with UNIFORM_TEXEL_BUFFER usage (`Buffer::new` under
        // `Device::texel_weights`) and outlives the sets written with the view; destroyed in Drop.
        let v = unsafe { self.dev.raw.create_buffer_view(&info, None) }
            .map_err(vkerr("vkCreateBufferView"))?;
        self.views.push(v);
        Ok(v)
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
        let texel = kernel.layout.texel;
        // Per binding, one range per array element (storage buffers) or one view (texel).
        let mut infos: Vec<Vec<vk::DescriptorBufferInfo>> = Vec::new();
        let mut views: Vec<Vec<vk::BufferView>> = Vec::new();
        for (i, (ranges, &n)) in bindings.iter().zip(counts).enumerate() {
            let each = (0..n as usize).map(|e| ranges[e.min(ranges.len() - 1)]);
            if is_texel(texel, i) {
                infos.push(Vec::new());
                let v = each.map(|r| self.view(r)).collect::<Result<Vec<_>>>()?;
                views.push(v);
            } else {
                infos.push(
                    each.map(|r| vk::DescriptorBufferInfo {
                        buffer: r.buffer,
                        offset: r.offset,
                        range: r.len,
                    })
                    .collect(),
                );
                views.push(Vec::new());
            }
        }
        let writes: Vec<vk::WriteDescriptorSet> = (0..counts.len())
            .map(|i| {
                let w = vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(descriptor_type(texel, i));
                if is_texel(texel, i) {
                    w.texel_buffer_view(&views[i])
                } else {
                    w.buffer_info(&infos[i])
                }
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
        // SAFETY: no pending command buffer uses its sets or views (the engine waits first).
        unsafe {
            self.dev.raw.destroy_descriptor_pool(self.pool, None);
            for v in self.views.drain(..) {
                self.dev.raw.destroy_buffer_view(v, None);
            }
        }
    }
}
