//! Physical-device discovery and choice, and the logical device everything else hangs off.
//!
//! Policy: discrete GPUs first, then integrated, then virtual; a CPU implementation (lavapipe /
//! llvmpipe / SwiftShader) or the Raspberry Pi's V3D is used only when asked for by
//! `--device INDEX|NAME` or `PIGPU_DEVICE`. The listing says why each device was or was not chosen.

#[cfg(any(test, feature = "testing"))]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ash::vk;

use super::choices::Choices;
use super::error::{vkerr, Result, VkError};
use super::features::{self as feat, Features};
use super::instance::Instance;
use super::tuning::Tuning;
use crate::platform::vulkan::VulkanEnv;

/// The storage range the engine needs at least (weights are bound in pieces of this or more).
const MIN_STORAGE_RANGE: u64 = 16 << 20;
/// Shared memory the sampler needs (two 16-bin histograms for 128 invocations, plus a little).
const MIN_SHARED_MEMORY: u32 = 17 * 1024;

/// The Vulkan physical device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A discrete GPU.
    Discrete,
    /// A GPU integrated with the CPU (sharing its memory).
    Integrated,
    /// A virtual GPU (a VM's).
    Virtual,
    /// A CPU implementation (lavapipe, SwiftShader).
    Cpu,
    /// Anything else the driver reports.
    Other,
}

/// What `--list-devices` and `doctor` show about one Vulkan device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// Position in the loader's device list: what `--device INDEX` takes.
    pub index: usize,
    /// Device name as the driver reports it.
    pub name: String,
    /// Discrete, integrated, CPU, …
    pub kind: DeviceKind,
    /// PCI vendor id (`0x10de` NVIDIA).
    pub vendor_id: u32,
    /// The vendor's device id.
    pub device_id: u32,
    /// Vulkan API version the device supports (`1.3.280`).
    pub api_version: String,
    /// Driver name and version as the driver reports them.
    pub driver: String,
    /// Largest device-local heap, MiB.
    pub memory_mib: u64,
    /// Invocations per subgroup (32 on NVIDIA).
    pub subgroup_size: u32,
    /// `maxStorageBufferRange`, in bytes.
    pub max_storage_buffer_range: u64,
    /// Why the engine cannot use it at all (`None` = usable).
    pub problem: Option<String>,
    /// Whether automatic choice may take it (CPU implementations and V3D: only when asked).
    pub auto_ok: bool,
    /// Whether this is the device the engine would use.
    pub chosen: bool,
    /// Why it was or was not chosen.
    pub reason: String,
}

fn kind_of(t: vk::PhysicalDeviceType) -> DeviceKind {
    match t {
        vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
        vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
        vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::Virtual,
        vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
        _ => DeviceKind::Other,
    }
}

fn is_cpu_impl(info: &DeviceInfo) -> bool {
    let n = info.name.to_lowercase();
    info.kind == DeviceKind::Cpu
        || n.contains("llvmpipe")
        || n.contains("lavapipe")
        || n.contains("swiftshader")
}

fn is_v3d(info: &DeviceInfo) -> bool {
    info.vendor_id == 0x14E4 || info.name.to_uppercase().contains("V3D")
}

/// Everything probed about a physical device, kept for creating the logical device.
pub(crate) struct Probe {
    pub physical: vk::PhysicalDevice,
    pub info: DeviceInfo,
    pub queue_family: Option<u32>,
    pub limits: vk::PhysicalDeviceLimits,
    pub memory: vk::PhysicalDeviceMemoryProperties,
    pub dynamic_indexing: bool,
    pub features: Features,
}

pub(crate) fn probe_all(instance: &Instance) -> Result<Vec<Probe>> {
    // SAFETY: queries on a live instance; the returned handles live as long as it does.
    let physicals = unsafe { instance.raw.enumerate_physical_devices() }
        .map_err(vkerr("vkEnumeratePhysicalDevices"))?;
    let mut out = Vec::new();
    for (index, &pd) in physicals.iter().enumerate() {
        // SAFETY: as above.
        let props = unsafe { instance.raw.get_physical_device_properties(pd) };
        let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
        let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
        // SAFETY: as above; the chain lives on the stack for the call.
        unsafe {
            instance
                .raw
                .get_physical_device_properties2(pd, &mut props2)
        };
        let mut driver = String::new();
        if props.api_version >= vk::API_VERSION_1_2 {
            let mut dp = vk::PhysicalDeviceDriverProperties::default();
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut dp);
            // SAFETY: as above.
            unsafe { instance.raw.get_physical_device_properties2(pd, &mut p2) };
            driver = format!(
                "{} {}",
                dp.driver_name_as_c_str()
                    .map(|c| c.to_string_lossy())
                    .unwrap_or_default(),
                dp.driver_info_as_c_str()
                    .map(|c| c.to_string_lossy())
                    .unwrap_or_default()
            )
            .trim()
            .to_string();
        }
        // SAFETY: as above.
        let features = unsafe { instance.raw.get_physical_device_features(pd) };
        // SAFETY: as above.
        let memory = unsafe { instance.raw.get_physical_device_memory_properties(pd) };
        // SAFETY: as above.
        let families = unsafe { instance.raw.get_physical_device_queue_family_properties(pd) };
        let queue_family = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .map(|i| i as u32);
        let memory_mib = memory.memory_heaps[..memory.memory_heap_count as usize]
            .iter()
            .filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size >> 20)
            .max()
            .unwrap_or(0);
        let name = props
            .device_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("device {index}"));
        let limits = props.limits;
        let dynamic_indexing = features.shader_storage_buffer_array_dynamic_indexing == vk::TRUE;
        let optional = feat::probe(instance, pd, props.api_version, &subgroup);
        let mut info = DeviceInfo {
            index,
            name,
            kind: kind_of(props.device_type),
            vendor_id: props.vendor_id,
            device_id: props.device_id,
            api_version: format!(
                "{}.{}.{}",
                vk::api_version_major(props.api_version),
                vk::api_version_minor(props.api_version),
                vk::api_version_patch(props.api_version)
            ),
            driver,
            memory_mib,
            subgroup_size: subgroup.subgroup_size,
            max_storage_buffer_range: limits.max_storage_buffer_range as u64,
            problem: None,
            auto_ok: true,
            chosen: false,
            reason: String::new(),
        };
        info.problem = if props.api_version < vk::API_VERSION_1_1 {
            Some("supports only Vulkan 1.0 (1.1 needed)".into())
        } else if queue_family.is_none() {
            Some("has no compute queue".into())
        } else if !dynamic_indexing {
            Some("lacks shaderStorageBufferArrayDynamicIndexing".into())
        } else if (limits.max_storage_buffer_range as u64) < MIN_STORAGE_RANGE {
            Some(format!(
                "maxStorageBufferRange is {} bytes (16 MiB needed)",
                limits.max_storage_buffer_range
            ))
        } else if limits.max_compute_shared_memory_size < MIN_SHARED_MEMORY {
            Some(format!(
                "maxComputeSharedMemorySize is {} bytes ({MIN_SHARED_MEMORY} needed)",
                limits.max_compute_shared_memory_size
            ))
        } else {
            None
        };
        info.auto_ok = !is_cpu_impl(&info) && !is_v3d(&info);
        out.push(Probe {
            physical: pd,
            info,
            queue_family,
            limits,
            memory,
            dynamic_indexing,
            features: optional,
        });
    }
    Ok(out)
}

fn rank(k: DeviceKind) -> u32 {
    match k {
        DeviceKind::Discrete => 0,
        DeviceKind::Integrated => 1,
        DeviceKind::Virtual => 2,
        DeviceKind::Other => 3,
        DeviceKind::Cpu => 4,
    }
}

/// Picks a device: `selector` is an index or a case-insensitive part of the name (from
/// `--device` or `PIGPU_DEVICE`). Fills in `chosen` and `reason` for every device.
pub fn choose(infos: &mut [DeviceInfo], selector: Option<&str>) -> Result<usize> {
    let selector = selector.map(str::trim).filter(|s| !s.is_empty());
    let pick = if let Some(sel) = selector {
        let hit = match sel.parse::<usize>() {
            Ok(i) => infos.iter().position(|d| d.index == i),
            Err(_) => {
                let s = sel.to_lowercase();
                infos
                    .iter()
                    .position(|d| d.name.to_lowercase().contains(&s))
            }
        };
        let Some(i) = hit else {
            let names: Vec<String> = infos
                .iter()
                .map(|d| format!("{}: {}", d.index, d.name))
                .collect();
            return Err(VkError::NoDevice(format!(
                "no device matches '{sel}' (devices: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        if let Some(p) = &infos[i].problem {
            return Err(VkError::Unsupported(format!(
                "device {} '{}' ({p})",
                i, infos[i].name
            )));
        }
        for d in infos.iter_mut() {
            d.reason = format!("not the device asked for ('{sel}')");
        }
        i
    } else {
        let best = infos
            .iter()
            .filter(|d| d.problem.is_none() && d.auto_ok)
            .min_by_key(|d| (rank(d.kind), u64::MAX - d.memory_mib))
            .map(|d| d.index);
        for d in infos.iter_mut() {
            d.reason = if let Some(p) = &d.problem {
                format!("unusable: {p}")
            } else if is_v3d(d) {
                "the Raspberry Pi's V3D is too small for LLM inference; only used with --device"
                    .into()
            } else if is_cpu_impl(d) {
                "a CPU implementation (slower than pigpu's CPU engine); only used with --device"
                    .into()
            } else {
                "another device ranks higher (discrete > integrated > virtual, then memory)".into()
            };
        }
        let Some(i) = best.and_then(|b| infos.iter().position(|d| d.index == b)) else {
            let why: Vec<String> = infos
                .iter()
                .map(|d| format!("{} ({})", d.name, d.reason))
                .collect();
            return Err(VkError::NoDevice(if why.is_empty() {
                "the Vulkan loader reports no devices".into()
            } else {
                format!("no GPU suitable for automatic choice: {}", why.join("; "))
            }));
        };
        i
    };
    infos[pick].chosen = true;
    infos[pick].reason = if selector.is_some() {
        "chosen with --device / PIGPU_DEVICE".into()
    } else {
        format!(
            "chosen automatically ({:?} GPU ranks first)",
            infos[pick].kind
        )
        .to_lowercase()
    };
    Ok(pick)
}

/// Every Vulkan device with the reason it would or would not be chosen with `selector`
/// (`Tuning::device`: `--device` or `PIGPU_DEVICE`; `None`: the automatic choice); `env` as in
/// `Tuning::vulkan_env`. For `--list-devices` and `doctor`.
pub fn list_devices_with(selector: Option<&str>, env: &VulkanEnv) -> Result<Vec<DeviceInfo>> {
    let instance = Instance::new(false, false, env)?;
    let mut infos: Vec<DeviceInfo> = probe_all(&instance)?.into_iter().map(|p| p.info).collect();
    // A failed choice still leaves the reasons filled in, which is what a listing wants.
    let _ = choose(&mut infos, selector);
    Ok(infos)
}

/// The logical device with its one compute queue. Every other Vulkan object holds an `Arc` of it.
pub struct Device {
    pub(crate) instance: Arc<Instance>,
    pub(crate) raw: ash::Device,
    pub(crate) physical: vk::PhysicalDevice,
    pub(crate) queue: vk::Queue,
    pub(crate) queue_family: u32,
    pub(crate) memory: vk::PhysicalDeviceMemoryProperties,
    pub(crate) limits: vk::PhysicalDeviceLimits,
    /// The optional features present on the device, all enabled on it.
    pub(crate) features: Features,
    pub info: DeviceInfo,
    /// The engine's knobs, resolved by the command layer (kernels, graph and pipeline cache
    /// read them from here).
    pub(crate) tuning: Tuning,
    /// Every choice made by device kind (`choices.rs`), made once here: the kernels, the
    /// graph, the attention, the sampler and the readback read them, never the kind.
    pub(crate) choices: Choices,
    /// Bytes of device-local memory held by live buffers (buffer.rs keeps it).
    pub(crate) device_local: AtomicU64,
    /// Test hook (test builds only: `cfg(test)` or `--features testing`): queue submits left
    /// before every submit fails as if the device were lost; negative = off.
    #[cfg(any(test, feature = "testing"))]
    lose_after: AtomicI64,
}

impl Device {
    /// Opens the device `tuning.device` names (or the automatic choice), with the validation
    /// layer when `tuning.validation`.
    pub fn open(tuning: &Tuning) -> Result<Arc<Device>> {
        let instance = Instance::new(tuning.validation, tuning.debug_echo, &tuning.vulkan_env)?;
        let probes = probe_all(&instance)?;
        let mut infos: Vec<DeviceInfo> = probes.iter().map(|p| p.info.clone()).collect();
        let i = choose(&mut infos, tuning.device.as_deref())?;
        let p = &probes[i];
        let family = p.queue_family.expect("chosen devices have a compute queue");
        let prio = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&prio)];
        let features = vk::PhysicalDeviceFeatures::default()
            .shader_storage_buffer_array_dynamic_indexing(p.dynamic_indexing);
        let mut enable = feat::Enable::new(p.features);
        let info = enable.chain(
            vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_features(&features),
        );
        // SAFETY: the physical device belongs to `instance`; `info` outlives the call.
        let raw = unsafe { instance.raw.create_device(p.physical, &info, None) }
            .map_err(vkerr("vkCreateDevice"))?;
        // SAFETY: queue 0 of the family was requested above.
        let queue = unsafe { raw.get_device_queue(family, 0) };
        let texel_reach = p.limits.max_texel_buffer_elements as u64 * 4
            >= (p.limits.max_storage_buffer_range as u64).min(1 << 31);
        let choices = Choices::new(
            infos[i].kind == DeviceKind::Cpu,
            p.features.subgroup_arith,
            texel_reach,
            tuning,
        );
        Ok(Arc::new(Device {
            physical: p.physical,
            queue,
            queue_family: family,
            memory: p.memory,
            limits: p.limits,
            features: p.features,
            info: infos[i].clone(),
            raw,
            instance,
            tuning: tuning.clone(),
            choices,
            device_local: AtomicU64::new(0),
            #[cfg(any(test, feature = "testing"))]
            lose_after: AtomicI64::new(-1),
        }))
    }

    /// The choices made for this device by kind (`choices.rs`).
    pub fn choices(&self) -> &Choices {
        &self.choices
    }

    /// Largest range one storage-buffer binding may cover.
    pub fn max_binding(&self) -> u64 {
        (self.limits.max_storage_buffer_range as u64).min(1 << 31)
    }

    /// Whether the `matvec.comp` mat-vecs read weights (and x, the norm weights) through
    /// uniform texel buffers (`Tuning::texel_weights`; default: on CPU implementations, where
    /// lavapipe gathers texels but loops over the SIMD lanes for every storage-buffer load, if
    /// a texel view reaches as far as a storage binding, so no tensor needs more pieces).
    pub fn texel_weights(&self) -> bool {
        self.choices.texel_weights
    }

    /// Whether the device state is host-visible and the host reads each step's token and
    /// verdict from it directly, with no copy command (`Tuning::state_mapped`; default: on CPU
    /// implementations).
    pub fn state_mapped(&self) -> bool {
        self.choices.state_mapped
    }

    /// Largest range one weight binding may cover: a storage binding, and with texel weights
    /// also an `R32_UINT` texel-buffer view (`maxTexelBufferElements` words).
    pub fn max_weight_binding(&self) -> u64 {
        let b = self.max_binding();
        if self.texel_weights() {
            b.min(self.limits.max_texel_buffer_elements as u64 * 4)
        } else {
            b
        }
    }

    /// Device-local bytes allocated by the buffers alive now.
    pub fn device_local_bytes(&self) -> u64 {
        self.device_local.load(Ordering::Relaxed)
    }

    /// Validation errors recorded so far (see `Instance::take_validation_errors`).
    pub fn take_validation_errors(&self) -> Vec<String> {
        self.instance.take_validation_errors()
    }

    /// Test builds only: after `n` more queue submits, every submit fails with
    /// `VK_ERROR_DEVICE_LOST` (nothing is submitted), as on a real device after a reset, so the
    /// recovery paths (`--backend auto` moving to the CPU) are tested with this engine's real
    /// errors. Release builds have neither the hook nor its check on each submit.
    #[cfg(any(test, feature = "testing"))]
    pub fn lose_after_submits(&self, n: u64) {
        self.lose_after
            .store(n.min(i64::MAX as u64) as i64, Ordering::Relaxed);
    }

    /// Counts a submit against the test hook; true when it must fail as a lost device.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn test_hook_lost(&self) -> bool {
        let n = self.lose_after.load(Ordering::Relaxed);
        if n > 0 {
            self.lose_after.store(n - 1, Ordering::Relaxed);
        }
        n == 0
    }

    /// Without the test hook no submit fails on purpose.
    #[cfg(not(any(test, feature = "testing")))]
    #[inline(always)]
    pub(crate) fn test_hook_lost(&self) -> bool {
        false
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: all child objects hold an Arc of this device and are gone; wait for the queue
        // first so nothing is in flight.
        unsafe {
            let _ = self.raw.device_wait_idle();
            self.raw.destroy_device(None);
        }
    }
}
