//! Host <-> device transfers. Uploads stream through two host-visible staging buffers and
//! `vkCmdCopyBuffer` (the CPU never writes device-local memory): while the GPU copies one chunk,
//! the CPU fills the other, so host memory stays at two chunks whatever the model size.

use std::sync::Arc;

use super::buffer::{Buffer, MemKind};
use super::command::Cmd;
use super::device::Device;
use super::error::Result;

/// Staging chunk size: large enough to amortise a submit, small next to any GPU's memory.
pub const CHUNK: u64 = 16 << 20;

pub struct Uploader {
    staging: [Buffer; 2],
    cmds: [Cmd; 2],
    next: usize,
    /// Bytes uploaded so far.
    pub bytes: u64,
}

impl Uploader {
    pub fn new(dev: &Arc<Device>, chunk: u64) -> Result<Uploader> {
        Ok(Uploader {
            staging: [
                Buffer::new(dev, chunk, MemKind::Upload, "upload staging buffer")?,
                Buffer::new(dev, chunk, MemKind::Upload, "upload staging buffer")?,
            ],
            cmds: [Cmd::new(dev)?, Cmd::new(dev)?],
            next: 0,
            bytes: 0,
        })
    }

    /// Copies `data` into `dst` at `dst_off`, chunk by chunk. Returns when the copies are
    /// submitted; `finish` waits for the last ones.
    pub fn upload(&mut self, dst: &Buffer, dst_off: u64, data: &[u8]) -> Result<()> {
        let chunk = self.staging[0].size as usize;
        for (i, piece) in data.chunks(chunk).enumerate() {
            let s = self.next;
            self.next ^= 1;
            // The staging buffer is free once its previous copy completed.
            self.cmds[s].wait()?;
            self.staging[s].write(0, piece);
            let cmd = &mut self.cmds[s];
            cmd.begin(false)?;
            cmd.copy(
                &self.staging[s],
                0,
                dst,
                dst_off + (i * chunk) as u64,
                piece.len() as u64,
            );
            cmd.end()?;
            cmd.submit()?;
            self.bytes += piece.len() as u64;
        }
        Ok(())
    }

    /// Waits for every submitted copy.
    pub fn finish(&mut self) -> Result<()> {
        self.cmds[0].wait()?;
        self.cmds[1].wait()
    }
}

/// Reads `len` bytes at `off` of a device buffer back to the host (slow path: tests, logits).
pub fn download(dev: &Arc<Device>, src: &Buffer, off: u64, len: u64) -> Result<Vec<u8>> {
    let rb = Buffer::new(dev, len, MemKind::Readback, "readback buffer")?;
    let mut cmd = Cmd::new(dev)?;
    cmd.begin(false)?;
    cmd.copy(src, off, &rb, 0, len);
    cmd.end()?;
    cmd.submit_wait()?;
    let mut out = vec![0u8; len as usize];
    rb.read(0, &mut out);
    Ok(out)
}
