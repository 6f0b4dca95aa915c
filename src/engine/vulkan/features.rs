//! Optional device features the kernels may use — 16/8-bit storage, f16 arithmetic, subgroup
//! arithmetic and shuffles, subgroup size control with full subgroups — probed per physical
//! device and enabled at device creation when present (absent ones leave the fallback paths).

use std::ffi::CStr;

use ash::vk;

use super::instance::Instance;

/// What a device offers beyond the engine's minimum (all false / 0 on a bare Vulkan 1.1 device).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Features {
    /// `storageBuffer16BitAccess`.
    pub storage16: bool,
    /// `storageBuffer8BitAccess` (Vulkan 1.2).
    pub storage8: bool,
    /// `shaderFloat16` (Vulkan 1.2).
    pub float16: bool,
    /// Subgroup arithmetic (`subgroupAdd`, ...) in compute shaders.
    pub subgroup_arith: bool,
    /// Subgroup shuffles in compute shaders.
    pub subgroup_shuffle: bool,
    /// Subgroup ballot operations (`subgroupBroadcast`, ...) in compute shaders.
    pub subgroup_ballot: bool,
    /// `subgroupSizeControl` (VK_EXT_subgroup_size_control, core in 1.3).
    pub size_control: bool,
    /// `computeFullSubgroups`: a pipeline may require every subgroup to be full.
    pub full_subgroups: bool,
    /// Smallest and largest subgroup size (both the default size without size control).
    pub min_subgroup: u32,
    pub max_subgroup: u32,
}

fn has_ext(exts: &[vk::ExtensionProperties], name: &CStr) -> bool {
    exts.iter()
        .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
}

/// Probes `pd` (whose API version is `api` and default subgroup properties `sg`).
pub(crate) fn probe(
    instance: &Instance,
    pd: vk::PhysicalDevice,
    api: u32,
    sg: &vk::PhysicalDeviceSubgroupProperties<'_>,
) -> Features {
    // SAFETY: queries on a live instance and one of its physical devices.
    let exts =
        unsafe { instance.raw.enumerate_device_extension_properties(pd) }.unwrap_or_default();
    let compute = sg.supported_stages.contains(vk::ShaderStageFlags::COMPUTE);
    let ext_size = has_ext(&exts, vk::EXT_SUBGROUP_SIZE_CONTROL_NAME);
    let v12 = api >= vk::API_VERSION_1_2;
    let mut s16 = vk::PhysicalDevice16BitStorageFeatures::default();
    let mut s8 = vk::PhysicalDevice8BitStorageFeatures::default();
    let mut f16 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
    let mut size = vk::PhysicalDeviceSubgroupSizeControlFeatures::default();
    let mut f2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut s16);
    if v12 {
        f2 = f2.push_next(&mut s8).push_next(&mut f16);
    }
    if ext_size {
        f2 = f2.push_next(&mut size);
    }
    // SAFETY: as above; every struct in the chain is core at `api` or its extension is present.
    unsafe { instance.raw.get_physical_device_features2(pd, &mut f2) };
    let (mut min_sg, mut max_sg) = (sg.subgroup_size, sg.subgroup_size);
    if ext_size {
        let mut sp = vk::PhysicalDeviceSubgroupSizeControlProperties::default();
        let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut sp);
        // SAFETY: as above.
        unsafe { instance.raw.get_physical_device_properties2(pd, &mut p2) };
        if sp.min_subgroup_size > 0 && sp.max_subgroup_size >= sp.min_subgroup_size {
            (min_sg, max_sg) = (sp.min_subgroup_size, sp.max_subgroup_size);
        }
    }
    let ops = sg.supported_operations;
    Features {
        storage16: s16.storage_buffer16_bit_access == vk::TRUE,
        storage8: v12 && s8.storage_buffer8_bit_access == vk::TRUE,
        float16: v12 && f16.shader_float16 == vk::TRUE,
        subgroup_arith: compute && ops.contains(vk::SubgroupFeatureFlags::ARITHMETIC),
        subgroup_shuffle: compute && ops.contains(vk::SubgroupFeatureFlags::SHUFFLE),
        subgroup_ballot: compute && ops.contains(vk::SubgroupFeatureFlags::BALLOT),
        size_control: ext_size && size.subgroup_size_control == vk::TRUE,
        full_subgroups: ext_size && size.compute_full_subgroups == vk::TRUE,
        min_subgroup: min_sg,
        max_subgroup: max_sg,
    }
}

/// The feature structs and extensions that enable `f` on a new device (kept alive for the
/// duration of `vkCreateDevice`).
pub(crate) struct Enable {
    s16: vk::PhysicalDevice16BitStorageFeatures<'static>,
    s8: vk::PhysicalDevice8BitStorageFeatures<'static>,
    f16: vk::PhysicalDeviceShaderFloat16Int8Features<'static>,
    size: vk::PhysicalDeviceSubgroupSizeControlFeatures<'static>,
    pub extensions: Vec<*const std::ffi::c_char>,
    f: Features,
}

impl Enable {
    pub fn new(f: Features) -> Enable {
        let mut extensions = Vec::new();
        if f.size_control || f.full_subgroups {
            extensions.push(vk::EXT_SUBGROUP_SIZE_CONTROL_NAME.as_ptr());
        }
        Enable {
            s16: vk::PhysicalDevice16BitStorageFeatures::default()
                .storage_buffer16_bit_access(f.storage16),
            s8: vk::PhysicalDevice8BitStorageFeatures::default()
                .storage_buffer8_bit_access(f.storage8),
            f16: vk::PhysicalDeviceShaderFloat16Int8Features::default().shader_float16(f.float16),
            size: vk::PhysicalDeviceSubgroupSizeControlFeatures::default()
                .subgroup_size_control(f.size_control)
                .compute_full_subgroups(f.full_subgroups),
            extensions,
            f,
        }
    }

    /// Chains the structs of the features present onto `info`.
    pub fn chain<'a>(&'a mut self, mut info: vk::DeviceCreateInfo<'a>) -> vk::DeviceCreateInfo<'a> {
        if self.f.storage16 {
            info = info.push_next(&mut self.s16);
        }
        if self.f.storage8 {
            info = info.push_next(&mut self.s8);
        }
        if self.f.float16 {
            info = info.push_next(&mut self.f16);
        }
        if self.f.size_control || self.f.full_subgroups {
            info = info.push_next(&mut self.size);
        }
        info.enabled_extension_names(&self.extensions)
    }
}
