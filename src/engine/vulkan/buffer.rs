//! Buffers with their own memory: device-local (weights, activations, KV cache; written only by
//! copy commands and shaders, never by the CPU, except the weights on a device whose memory is
//! the host's: `MemKind::Weights`) and host-visible (staging for uploads, readback, the
//! per-token sampling parameters). Each frees itself in `Drop`.

use std::sync::Arc;

use ash::vk;

use super::device::Device;
use super::error::{vkerr, Result, VkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// Device-local; filled by `vkCmdCopyBuffer` or shaders.
    Device,
    /// As `Device`, and mapped where the device's memory is the host's and host-visible
    /// (`Choices::weights_in_place`: CPU implementations), for the CPU to fill in place.
    Weights,
    /// Host-visible and coherent, written by the CPU (staging, parameters).
    Upload,
    /// Host-visible and coherent, preferably cached, read by the CPU.
    Readback,
}

pub struct Buffer {
    dev: Arc<Device>,
    pub(crate) raw: vk::Buffer,
    mem: vk::DeviceMemory,
    /// Bytes usable by the caller.
    pub size: u64,
    /// Bytes allocated: `size` rounded up, plus a word of slack for shaders' whole-word reads.
    alloc: u64,
    ptr: *mut u8,
    /// Device-local bytes this buffer adds to `Device::device_local` while alive (0: host).
    local: u64,
}

// SAFETY: the mapped pointer refers to memory owned by this buffer; access goes through &self /
// &mut self methods that copy bytes, and the engine uses a buffer from one thread at a time.
unsafe impl Send for Buffer {}

fn find_type(
    props: &vk::PhysicalDeviceMemoryProperties,
    bits: u32,
    want: &[vk::MemoryPropertyFlags],
) -> Option<u32> {
    for flags in want {
        for i in 0..props.memory_type_count {
            if bits & (1 << i) != 0
                && props.memory_types[i as usize]
                    .property_flags
                    .contains(*flags)
            {
                return Some(i);
            }
        }
    }
    None
}

impl Buffer {
    /// A buffer of at least `size` bytes (rounded up to 16; shaders read whole 32-bit words and
    /// may read one word past a 2-byte-aligned end). `what` names it in errors.
    pub fn new(dev: &Arc<Device>, size: u64, kind: MemKind, what: &str) -> Result<Buffer> {
        let alloc_size = (size.max(16) + 4 + 15) & !15;
        let mut usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        // Device-local buffers may be viewed as texel buffers (`Device::texel_weights`).
        let device_local = matches!(kind, MemKind::Device | MemKind::Weights);
        if device_local && dev.texel_weights() {
            usage |= vk::BufferUsageFlags::UNIFORM_TEXEL_BUFFER;
        }
        let info = vk::BufferCreateInfo::default()
            .size(alloc_size)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let oom = |e: vk::Result| match e {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                VkError::OutOfDeviceMemory {
                    what: what.to_string(),
                    mib: alloc_size as f64 / 1048576.0,
                }
            }
            e => VkError::from_vk("vkCreateBuffer/vkAllocateMemory", e),
        };
        // SAFETY: valid create info; the buffer is destroyed in Drop (or below on failure).
        let raw = unsafe { dev.raw.create_buffer(&info, None) }.map_err(oom)?;
        // SAFETY: `raw` was created from this device.
        let req = unsafe { dev.raw.get_buffer_memory_requirements(raw) };
        use vk::MemoryPropertyFlags as F;
        let want: &[F] = match kind {
            MemKind::Device => &[F::DEVICE_LOCAL, F::empty()],
            MemKind::Weights if dev.choices.weights_in_place => &[
                F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT,
                F::DEVICE_LOCAL,
                F::empty(),
            ],
            MemKind::Weights => &[F::DEVICE_LOCAL, F::empty()],
            MemKind::Upload => &[F::HOST_VISIBLE | F::HOST_COHERENT],
            MemKind::Readback => &[
                F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED,
                F::HOST_VISIBLE | F::HOST_COHERENT,
            ],
        };
        let Some(ty) = find_type(&dev.memory, req.memory_type_bits, want) else {
            // SAFETY: not bound or used yet.
            unsafe { dev.raw.destroy_buffer(raw, None) };
            return Err(VkError::Unsupported(format!(
                "a memory type for {what} ({kind:?})"
            )));
        };
        let ai = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(ty);
        // SAFETY: valid allocate info; freed in Drop.
        let mem = match unsafe { dev.raw.allocate_memory(&ai, None) } {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: not bound or used yet.
                unsafe { dev.raw.destroy_buffer(raw, None) };
                return Err(oom(e));
            }
        };
        let mut b = Buffer {
            dev: dev.clone(),
            raw,
            mem,
            size,
            alloc: alloc_size,
            ptr: std::ptr::null_mut(),
            local: if device_local { req.size } else { 0 },
        };
        dev.device_local
            .fetch_add(b.local, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: fresh buffer and memory of a compatible type and sufficient size.
        unsafe { dev.raw.bind_buffer_memory(raw, mem, 0) }.map_err(vkerr("vkBindBufferMemory"))?;
        let host_visible = dev.memory.memory_types[ty as usize]
            .property_flags
            .contains(F::HOST_VISIBLE | F::HOST_COHERENT);
        let mapped = match kind {
            MemKind::Device => false,
            MemKind::Weights => dev.choices.weights_in_place && host_visible,
            MemKind::Upload | MemKind::Readback => true,
        };
        if mapped {
            // SAFETY: host-visible memory, mapped once for the buffer's lifetime.
            let p = unsafe {
                dev.raw
                    .map_memory(mem, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
            }
            .map_err(vkerr("vkMapMemory"))?;
            b.ptr = p as *mut u8;
        }
        Ok(b)
    }

    /// Whether the CPU can write this buffer in place (host-visible kinds; `Weights` where the
    /// device's memory is the host's).
    pub fn is_mapped(&self) -> bool {
        !self.ptr.is_null()
    }

    /// Copies `data` into a host-visible buffer at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        assert!(!self.ptr.is_null(), "write to a device-local buffer");
        assert!(
            offset + data.len() as u64 <= self.size,
            "write past the end of a buffer"
        );
        // SAFETY: the mapping covers `size` bytes; bounds checked above; no GPU work touches
        // this range while the CPU writes (callers wait on the fence of the previous use).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset as usize), data.len())
        }
    }

    /// The mapped bytes of a host-visible buffer, for filling in place (`&mut self`: no other
    /// host access meanwhile; callers make sure no GPU work uses the buffer, as for `write`).
    pub fn mapped_mut(&mut self) -> &mut [u8] {
        assert!(!self.ptr.is_null(), "mapping a device-local buffer");
        // SAFETY: the mapping covers `size` bytes for the buffer's lifetime and `&mut self`
        // makes this the only reference to it on the host.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.size as usize) }
    }

    /// Copies bytes out of a host-visible buffer.
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        assert!(!self.ptr.is_null(), "read from a device-local buffer");
        assert!(
            offset + out.len() as u64 <= self.size,
            "read past the end of a buffer"
        );
        // SAFETY: as in `write`; coherent memory, and the GPU work that wrote it has completed.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// A descriptor range covering bytes `offset..offset+len` (0 len = to the end), widened by
    /// the slack word so shaders may read the whole word holding the last byte (and one more).
    pub fn range(&self, offset: u64, len: u64) -> BufRange {
        let len = if len == 0 { self.size - offset } else { len };
        BufRange {
            buffer: self.raw,
            offset,
            len: ((len + 4 + 3) & !3).min(self.alloc - offset),
        }
    }

    /// The whole buffer as a descriptor range.
    pub fn all(&self) -> BufRange {
        self.range(0, 0)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the engine waits for the queue before dropping buffers; each handle is
        // destroyed once.
        unsafe {
            self.dev.raw.destroy_buffer(self.raw, None);
            self.dev.raw.free_memory(self.mem, None);
        }
        self.dev
            .device_local
            .fetch_sub(self.local, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A (buffer, offset, length) triple for a descriptor.
#[derive(Debug, Clone, Copy)]
pub struct BufRange {
    pub buffer: vk::Buffer,
    pub offset: u64,
    pub len: u64,
}

/// f32 slice as bytes.
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns as bytes; length scaled by 4.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// u32 slice as bytes.
pub fn u32_bytes(v: &[u32]) -> &[u8] {
    // SAFETY: as for f32.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}
