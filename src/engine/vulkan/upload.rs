//! Host <-> device transfers. Uploads stream through a ring of `SLOTS` host-visible staging
//! buffers and `vkCmdCopyBuffer` (the CPU never writes device-local memory): while the GPU copies
//! the chunks already submitted, the CPU fills the next slot, so host memory stays at
//! `SLOTS` chunks whatever the model size. Small tensors share a slot (one submit carries their
//! copies), and a large chunk is copied into staging by a few threads at once (the copy out of
//! the memory-mapped file, page faults included, is what limits a fast link). A destination the
//! CPU can write (`Buffer::is_mapped`: a weight buffer on a CPU implementation, whose memory is
//! the host's) is filled in place by the same threads instead, with no staging copy, no copy
//! command and no staging buffer allocated.

use std::sync::Arc;

use super::buffer::{Buffer, MemKind};
use super::command::CmdBuffer;
use super::device::Device;
use super::error::Result;

/// Staging chunk size: large enough to amortise a submit, small next to any GPU's memory.
pub const CHUNK: u64 = 16 << 20;
/// Staging buffers in the ring (copies in flight while the CPU fills the next one).
pub const SLOTS: usize = 4;
/// Threads that copy into a staging buffer at most, and the least bytes each one gets.
const FILL_THREADS: usize = 4;
const FILL_MIN_PER_THREAD: usize = 1 << 20;

struct Slot {
    staging: Buffer,
    cmd: CmdBuffer,
}

pub struct Uploader {
    dev: Arc<Device>,
    chunk: u64,
    /// Allocated at the first upload that goes through staging.
    slots: Vec<Slot>,
    /// The slot being filled.
    cur: usize,
    /// Bytes of the current slot filled, their copies recorded but not yet submitted (its
    /// command buffer is recording when this is > 0).
    fill: u64,
    threads: usize,
    /// Fill a mapped destination in place (else it goes through staging like any other).
    in_place: bool,
    /// Bytes uploaded so far.
    pub bytes: u64,
}

impl Uploader {
    /// An uploader with staging chunks of `chunk` bytes (the ring is allocated when first
    /// needed).
    pub fn new(dev: &Arc<Device>, chunk: u64) -> Result<Uploader> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(FILL_THREADS);
        Ok(Uploader {
            dev: dev.clone(),
            chunk,
            slots: Vec::new(),
            cur: 0,
            fill: 0,
            threads,
            in_place: true,
            bytes: 0,
        })
    }

    /// Sends even mapped destinations through staging (tests cover both paths on one device).
    #[cfg(test)]
    pub fn set_in_place(&mut self, on: bool) {
        self.in_place = on;
    }

    /// Staging buffers allocated so far (none until an upload needs staging).
    #[cfg(test)]
    pub fn staging_buffers(&self) -> usize {
        self.slots.len()
    }

    /// Copies `data` into `dst` at `dst_off`: in place where `dst` is mapped, else through the
    /// staging ring. Returns when every full slot is submitted; the rest goes with the next
    /// upload or `finish`, which waits for all.
    pub fn upload(&mut self, dst: &mut Buffer, dst_off: u64, data: &[u8]) -> Result<()> {
        if self.in_place && dst.is_mapped() {
            // No GPU work uses a buffer being uploaded (a fresh weight buffer); coherent memory,
            // made visible to the device by the next submit.
            let at = dst_off as usize;
            fill_parallel(
                &mut dst.mapped_mut()[at..at + data.len()],
                data,
                self.threads,
            );
            self.bytes += data.len() as u64;
            return Ok(());
        }
        if self.slots.is_empty() {
            for _ in 0..SLOTS {
                self.slots.push(Slot {
                    staging: Buffer::new(
                        &self.dev,
                        self.chunk,
                        MemKind::Upload,
                        "upload staging buffer",
                    )?,
                    cmd: CmdBuffer::new(&self.dev)?,
                });
            }
        }
        let mut done = 0usize;
        while done < data.len() {
            let slot = &mut self.slots[self.cur];
            if self.fill == 0 {
                // The staging buffer is free once its previous copies completed.
                slot.cmd.wait()?;
                slot.cmd.begin(false)?;
            }
            let room = (slot.staging.size - self.fill) as usize;
            let n = room.min(data.len() - done);
            let piece = &data[done..done + n];
            let at = self.fill as usize;
            fill_parallel(
                &mut slot.staging.mapped_mut()[at..at + n],
                piece,
                self.threads,
            );
            // Each copy writes its own range of `dst`: no barrier between copies is needed.
            slot.cmd.copy_unordered(
                &slot.staging,
                self.fill,
                dst,
                dst_off + done as u64,
                n as u64,
            );
            self.fill += n as u64;
            self.bytes += n as u64;
            done += n;
            if self.fill == slot.staging.size {
                self.submit_current()?;
            }
        }
        Ok(())
    }

    /// Submits the current slot's copies (if any) and moves on to the next slot.
    fn submit_current(&mut self) -> Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let cmd = &mut self.slots[self.cur].cmd;
        cmd.end()?;
        cmd.submit()?;
        self.fill = 0;
        self.cur = (self.cur + 1) % self.slots.len();
        Ok(())
    }

    /// Submits what is pending and waits for every copy.
    pub fn finish(&mut self) -> Result<()> {
        self.submit_current()?;
        for s in &self.slots {
            s.cmd.wait()?;
        }
        Ok(())
    }
}

/// `dst.copy_from_slice(src)`, split over up to `threads` threads when it is large.
fn fill_parallel(dst: &mut [u8], src: &[u8], threads: usize) {
    let t = threads.min(src.len() / FILL_MIN_PER_THREAD).max(1);
    if t == 1 {
        dst.copy_from_slice(src);
        return;
    }
    let per = src.len().div_ceil(t).next_multiple_of(4096);
    std::thread::scope(|s| {
        for (d, c) in dst.chunks_mut(per).zip(src.chunks(per)) {
            s.spawn(move || d.copy_from_slice(c));
        }
    });
}

/// Reads `len` bytes at `off` of a device buffer back to the host (slow path: tests, logits).
pub fn download(dev: &Arc<Device>, src: &Buffer, off: u64, len: u64) -> Result<Vec<u8>> {
    let rb = Buffer::new(dev, len, MemKind::Readback, "readback buffer")?;
    let mut cmd = CmdBuffer::new(dev)?;
    cmd.begin(false)?;
    cmd.copy(src, off, &rb, 0, len);
    cmd.end()?;
    cmd.submit_wait()?;
    let mut out = vec![0u8; len as usize];
    rb.read(0, &mut out);
    Ok(out)
}
