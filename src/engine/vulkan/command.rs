//! Command buffers: one pool + buffer + fence per `CmdBuffer`, a recorder that counts dispatches and puts
//! a compute barrier between dependent commands, and submit-and-wait with a timeout (a hung GPU is
//! an error, not a hang). A `CmdBuffer` made with `CmdBuffer::timed` also writes a GPU timestamp after every
//! command (`--profile`, see `profile.rs`); a plain `CmdBuffer` records no queries at all.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use ash::vk;

use super::buffer::Buffer;
use super::device::Device;
use super::error::{vkerr, Result, VkError};
use super::pipeline::GpuKernel;

/// How long one submit may take before we call the GPU hung (prompt processing on lavapipe is slow).
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(600);

/// What one timed interval measured: its label, the weight bytes it read (mat-vec / mat-mat)
/// and the floating-point operations it did (mat-mat), for the GB/s and GFLOP/s columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub label: String,
    pub weight_bytes: u64,
    pub flops: u64,
}

impl Stamp {
    pub fn named(label: String) -> Stamp {
        Stamp {
            label,
            weight_bytes: 0,
            flops: 0,
        }
    }
}

pub struct CmdBuffer {
    dev: Arc<Device>,
    pool: vk::CommandPool,
    pub(crate) cb: vk::CommandBuffer,
    fence: vk::Fence,
    /// Dispatches recorded in the current contents.
    pub dispatches: u64,
    pending_barrier: bool,
    /// Inside `group(true)`: commands get no barrier among themselves.
    grouped: bool,
    in_flight: Cell<bool>,
    /// Timestamp queries (only for `CmdBuffer::timed`).
    timing: Option<Timing>,
    /// Positions in the cache before this recording's first token, where the recording is
    /// for one batch at a known depth (a prompt batch; `None` after `begin`): the prompt
    /// attention splits its KV range by it (`Splits::prompt_split`).
    pub n_past: Option<u32>,
}

/// A query pool with one timestamp before the first command and one after each command.
struct Timing {
    pool: vk::QueryPool,
    cap: u32,
    /// What each interval (stamp i -> i + 1) measured, in recording order.
    stamps: Vec<Stamp>,
    /// The label the next command's interval gets (set by `CmdBuffer::label`).
    next: Option<Stamp>,
    /// Commands recorded after the pool was full (not timed).
    untimed: u32,
}

impl CmdBuffer {
    pub fn new(dev: &Arc<Device>) -> Result<CmdBuffer> {
        let pi = vk::CommandPoolCreateInfo::default()
            .queue_family_index(dev.queue_family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: valid create infos; everything is destroyed in Drop.
        unsafe {
            let pool = dev
                .raw
                .create_command_pool(&pi, None)
                .map_err(vkerr("vkCreateCommandPool"))?;
            let ai = vk::CommandBufferAllocateInfo::default()
                .command_pool(pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            let cb = match dev.raw.allocate_command_buffers(&ai) {
                Ok(v) => v[0],
                Err(e) => {
                    dev.raw.destroy_command_pool(pool, None);
                    return Err(VkError::from_vk("vkAllocateCommandBuffers", e));
                }
            };
            let fence = match dev.raw.create_fence(&vk::FenceCreateInfo::default(), None) {
                Ok(f) => f,
                Err(e) => {
                    dev.raw.destroy_command_pool(pool, None);
                    return Err(VkError::from_vk("vkCreateFence", e));
                }
            };
            Ok(CmdBuffer {
                dev: dev.clone(),
                pool,
                cb,
                fence,
                dispatches: 0,
                pending_barrier: false,
                grouped: false,
                in_flight: Cell::new(false),
                timing: None,
                n_past: None,
            })
        }
    }

    /// A command buffer that writes a timestamp before its first command and after each
    /// command, for at most `cap - 1` commands (later ones run untimed and are counted). The
    /// device must support timestamps on its queue (`profile::timestamp_support`).
    pub fn timed(dev: &Arc<Device>, cap: u32) -> Result<CmdBuffer> {
        let mut cmd = CmdBuffer::new(dev)?;
        let cap = cap.max(2);
        let qi = vk::QueryPoolCreateInfo::default()
            .query_type(vk::QueryType::TIMESTAMP)
            .query_count(cap);
        // SAFETY: valid create info; destroyed in Drop.
        let pool =
            unsafe { dev.raw.create_query_pool(&qi, None) }.map_err(vkerr("vkCreateQueryPool"))?;
        cmd.timing = Some(Timing {
            pool,
            cap,
            stamps: Vec::new(),
            next: None,
            untimed: 0,
        });
        Ok(cmd)
    }

    /// Names the interval of the next command (only evaluated on a timed buffer, so the
    /// normal path pays nothing); `None`: the command's own name (a dispatch's kernel).
    pub fn label(&mut self, f: impl FnOnce() -> Option<Stamp>) {
        if let Some(t) = &mut self.timing {
            t.next = f();
        }
    }

    /// After a command: a timestamp closing its interval, named by `label` or `default`.
    fn stamp(&mut self, default: impl FnOnce() -> String) {
        let Some(t) = &mut self.timing else {
            return;
        };
        let label = t.next.take();
        let i = t.stamps.len() as u32 + 1;
        if i >= t.cap {
            t.untimed += 1;
            return;
        }
        // SAFETY: recording; the query index is inside the pool, reset at `begin`.
        unsafe {
            self.dev.raw.cmd_write_timestamp(
                self.cb,
                vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                t.pool,
                i,
            )
        };
        t.stamps
            .push(label.unwrap_or_else(|| Stamp::named(default())));
    }

    /// The GPU nanoseconds of each timed command of the last completed submit, with its label.
    /// Call after `wait`. `period_ns`: the device's `timestampPeriod`; `valid_bits`: the
    /// queue's `timestampValidBits` (counters wrap there).
    pub fn times(&self, period_ns: f64, valid_bits: u32) -> Result<Vec<(Stamp, f64)>> {
        let Some(t) = &self.timing else {
            return Ok(Vec::new());
        };
        let n = t.stamps.len() + 1;
        let mut raw = vec![0u64; n];
        // SAFETY: the queries 0..n were written by the completed submit (WAIT makes sure).
        unsafe {
            self.dev.raw.get_query_pool_results(
                t.pool,
                0,
                &mut raw,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )
        }
        .map_err(vkerr("vkGetQueryPoolResults"))?;
        let mask = if valid_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << valid_bits) - 1
        };
        Ok(t.stamps
            .iter()
            .zip(raw.windows(2))
            .map(|(s, w)| {
                let ticks = w[1].wrapping_sub(w[0]) & mask;
                (s.clone(), ticks as f64 * period_ns)
            })
            .collect())
    }

    /// Commands of the current recording that ran untimed because the query pool was full.
    pub fn untimed(&self) -> u32 {
        self.timing.as_ref().map_or(0, |t| t.untimed)
    }

    /// Starts recording (discarding previous contents). `reusable`: the buffer will be submitted
    /// many times (the decode step), so no ONE_TIME_SUBMIT.
    pub fn begin(&mut self, reusable: bool) -> Result<()> {
        let flags = if reusable {
            vk::CommandBufferUsageFlags::empty()
        } else {
            vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT
        };
        // SAFETY: the buffer is not pending (every submit is waited for).
        unsafe {
            self.dev
                .raw
                .reset_command_buffer(self.cb, vk::CommandBufferResetFlags::empty())
                .map_err(vkerr("vkResetCommandBuffer"))?;
            self.dev
                .raw
                .begin_command_buffer(self.cb, &vk::CommandBufferBeginInfo::default().flags(flags))
                .map_err(vkerr("vkBeginCommandBuffer"))?;
        }
        self.dispatches = 0;
        self.pending_barrier = false;
        self.grouped = false;
        self.n_past = None;
        if let Some(t) = &mut self.timing {
            t.stamps.clear();
            t.next = None;
            t.untimed = 0;
            // SAFETY: recording; the whole pool is reset before its queries are written again
            // (inside the buffer, so a replayed recording resets it each time).
            unsafe {
                self.dev.raw.cmd_reset_query_pool(self.cb, t.pool, 0, t.cap);
                self.dev.raw.cmd_write_timestamp(
                    self.cb,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                    t.pool,
                    0,
                );
            }
        }
        Ok(())
    }

    pub fn end(&mut self) -> Result<()> {
        self.barrier_to_host();
        // SAFETY: recording was begun.
        unsafe { self.dev.raw.end_command_buffer(self.cb) }.map_err(vkerr("vkEndCommandBuffer"))
    }

    /// A full memory dependency between everything before and after (compute and transfer).
    /// Called before each command that reads what an earlier one wrote.
    pub fn barrier(&mut self) {
        if !self.pending_barrier || self.grouped {
            return;
        }
        let mb = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(
                vk::AccessFlags::SHADER_READ
                    | vk::AccessFlags::SHADER_WRITE
                    | vk::AccessFlags::TRANSFER_READ
                    | vk::AccessFlags::TRANSFER_WRITE,
            )];
        let stages = vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER;
        // SAFETY: recording; the barrier struct lives for the call.
        unsafe {
            self.dev.raw.cmd_pipeline_barrier(
                self.cb,
                stages,
                stages,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            )
        };
        self.pending_barrier = false;
    }

    /// `true`: the commands that follow, until `group(false)`, are independent of each other
    /// (e.g. the same op for several slots, each on its own rows and cache): the first waits for
    /// what came before, the others get no barrier, so the GPU may overlap them. `false`: back
    /// to a barrier before each command.
    pub fn group(&mut self, on: bool) {
        if on {
            self.barrier();
        }
        self.grouped = on;
    }

    fn barrier_to_host(&mut self) {
        let mb = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ)];
        // SAFETY: recording.
        unsafe {
            self.dev.raw.cmd_pipeline_barrier(
                self.cb,
                vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            )
        };
    }

    /// Records a dispatch of `kernel` with descriptor set `set`, push constants `push` and
    /// `groups` workgroups (x is folded into z when it exceeds the device limit).
    pub fn dispatch(
        &mut self,
        kernel: &GpuKernel,
        set: vk::DescriptorSet,
        push: &[u32],
        groups: [u32; 3],
    ) {
        self.barrier();
        self.bind_and_dispatch(kernel, set, push, groups);
        self.pending_barrier = true;
        self.stamp(|| kernel.name.clone());
    }

    /// Records `dispatches` (kernel, set, push, groups) as one command: one barrier before
    /// them, none among them (they must not depend on each other: e.g. the segments of a
    /// mat-vec, each writing its own rows), one timestamp after all, named by the first
    /// kernel. Each counts as a dispatch; x is folded into z as in `dispatch`.
    pub fn dispatch_all(
        &mut self,
        dispatches: &[(&GpuKernel, vk::DescriptorSet, Vec<u32>, [u32; 3])],
    ) {
        let Some(first) = dispatches.first() else {
            return;
        };
        self.barrier();
        for (kernel, set, push, groups) in dispatches {
            self.bind_and_dispatch(kernel, *set, push, *groups);
        }
        self.pending_barrier = true;
        self.stamp(|| first.0.name.clone());
    }

    /// Binds `kernel`'s pipeline, `set` and `push` and records its dispatch over `groups`
    /// (x folded into z past the device's limit); no barrier and no timestamp (the callers
    /// place those).
    fn bind_and_dispatch(
        &mut self,
        kernel: &GpuKernel,
        set: vk::DescriptorSet,
        push: &[u32],
        groups: [u32; 3],
    ) {
        let max_x = self.dev.limits.max_compute_work_group_count[0].min(65535);
        // The shaders number workgroups x + z·x_count and skip those past the end; the fold
        // spreads them evenly over z so the last layer wastes fewer than z of them.
        let [mut x, y, mut z] = groups;
        if x > max_x {
            z = x.div_ceil(max_x);
            x = x.div_ceil(z);
        }
        let pipeline = kernel.pipeline();
        // Kernels built inside `Kernels::all_at_once` get their pipelines at its end.
        assert!(
            pipeline != vk::Pipeline::null(),
            "kernel {} recorded before its pipeline was created",
            kernel.name
        );
        // SAFETY: recording; the kernel's layout matches the set and push size (checked by the
        // kernel wrappers).
        unsafe {
            let d = &self.dev.raw;
            let layout = kernel.layout.pipeline_layout;
            d.cmd_bind_pipeline(self.cb, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(
                self.cb,
                vk::PipelineBindPoint::COMPUTE,
                layout,
                0,
                &[set],
                &[],
            );
            if !push.is_empty() {
                let bytes = std::slice::from_raw_parts(push.as_ptr() as *const u8, push.len() * 4);
                d.cmd_push_constants(self.cb, layout, vk::ShaderStageFlags::COMPUTE, 0, bytes);
            }
            d.cmd_dispatch(self.cb, x, y, z);
        }
        self.dispatches += 1;
    }

    /// Records a buffer-to-buffer copy.
    pub fn copy(&mut self, src: &Buffer, src_off: u64, dst: &Buffer, dst_off: u64, len: u64) {
        self.barrier();
        let r = [vk::BufferCopy {
            src_offset: src_off,
            dst_offset: dst_off,
            size: len,
        }];
        // SAFETY: recording; ranges are inside both buffers (callers size them).
        unsafe { self.dev.raw.cmd_copy_buffer(self.cb, src.raw, dst.raw, &r) };
        self.pending_barrier = true;
        self.stamp(|| "copy".into());
    }

    /// Records one copy command of several `(src_off, dst_off, len)` ranges between two buffers
    /// (one barrier, one command: e.g. a few scattered words of state read back together).
    pub fn copy_ranges(&mut self, src: &Buffer, dst: &Buffer, ranges: &[(u64, u64, u64)]) {
        self.barrier();
        let r: Vec<vk::BufferCopy> = ranges
            .iter()
            .map(|&(src_offset, dst_offset, size)| vk::BufferCopy {
                src_offset,
                dst_offset,
                size,
            })
            .collect();
        // SAFETY: recording; ranges are inside both buffers (callers size them) and do not
        // overlap in the destination.
        unsafe { self.dev.raw.cmd_copy_buffer(self.cb, src.raw, dst.raw, &r) };
        self.pending_barrier = true;
        self.stamp(|| "copy".into());
    }

    /// Records a copy that needs no ordering against the commands before it (it writes a range
    /// nothing earlier in this buffer touches, e.g. one of several staging uploads): no barrier.
    pub fn copy_unordered(
        &mut self,
        src: &Buffer,
        src_off: u64,
        dst: &Buffer,
        dst_off: u64,
        len: u64,
    ) {
        let r = [vk::BufferCopy {
            src_offset: src_off,
            dst_offset: dst_off,
            size: len,
        }];
        // SAFETY: recording; ranges are inside both buffers (callers size them).
        unsafe { self.dev.raw.cmd_copy_buffer(self.cb, src.raw, dst.raw, &r) };
        self.pending_barrier = true;
        self.stamp(|| "copy".into());
    }

    /// Records a fill of `len` bytes (multiple of 4) with the word `value`.
    pub fn fill(&mut self, dst: &Buffer, off: u64, len: u64, value: u32) {
        self.barrier();
        // SAFETY: recording; range inside the buffer.
        unsafe {
            self.dev
                .raw
                .cmd_fill_buffer(self.cb, dst.raw, off, len, value)
        };
        self.pending_barrier = true;
        self.stamp(|| "fill".into());
    }

    /// Records a write of `data` (at most 65536 bytes, a multiple of 4) at `off` in `dst`, the
    /// bytes carried in the command buffer itself (`vkCmdUpdateBuffer`): no staging buffer.
    pub fn update(&mut self, dst: &Buffer, off: u64, data: &[u8]) {
        debug_assert!(data.len().is_multiple_of(4) && data.len() <= 65536);
        self.barrier();
        // SAFETY: recording; the range is inside the buffer (callers size it) and `data` obeys
        // vkCmdUpdateBuffer's size rules (checked above in debug builds).
        unsafe { self.dev.raw.cmd_update_buffer(self.cb, dst.raw, off, data) };
        self.pending_barrier = true;
        self.stamp(|| "update".into());
    }

    /// Submits and returns without waiting (`wait` completes it).
    pub fn submit(&self) -> Result<()> {
        if self.dev.test_hook_lost() {
            return Err(VkError::DeviceLost);
        }
        let cbs = [self.cb];
        let si = [vk::SubmitInfo::default().command_buffers(&cbs)];
        // SAFETY: recorded and ended; the fence is unsignalled (reset after each wait).
        unsafe { self.dev.raw.queue_submit(self.dev.queue, &si, self.fence) }
            .map_err(vkerr("vkQueueSubmit"))?;
        self.in_flight.set(true);
        Ok(())
    }

    /// Waits for the last submit (with `SUBMIT_TIMEOUT`) and resets the fence.
    pub fn wait(&self) -> Result<()> {
        if !self.in_flight.get() {
            return Ok(());
        }
        // SAFETY: the fence belongs to this device and was passed to the last submit.
        unsafe {
            match self.dev.raw.wait_for_fences(
                &[self.fence],
                true,
                SUBMIT_TIMEOUT.as_nanos() as u64,
            ) {
                Ok(()) => {}
                Err(vk::Result::TIMEOUT) => {
                    return Err(VkError::Timeout {
                        what: "a GPU submit",
                        secs: SUBMIT_TIMEOUT.as_secs(),
                    })
                }
                Err(e) => return Err(VkError::from_vk("vkWaitForFences", e)),
            }
            self.in_flight.set(false);
            self.dev
                .raw
                .reset_fences(&[self.fence])
                .map_err(vkerr("vkResetFences"))
        }
    }

    pub fn submit_wait(&self) -> Result<()> {
        self.submit()?;
        self.wait()
    }
}

impl Drop for CmdBuffer {
    fn drop(&mut self) {
        // SAFETY: wait for any pending work using this buffer, then destroy once.
        unsafe {
            if self.in_flight.get() {
                let _ = self.dev.raw.wait_for_fences(
                    &[self.fence],
                    true,
                    SUBMIT_TIMEOUT.as_nanos() as u64,
                );
            }
            self.dev.raw.destroy_fence(self.fence, None);
            if let Some(t) = &self.timing {
                self.dev.raw.destroy_query_pool(t.pool, None);
            }
            self.dev.raw.destroy_command_pool(self.pool, None);
        }
    }
}
