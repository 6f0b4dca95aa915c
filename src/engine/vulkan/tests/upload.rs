//! The staging ring on lavapipe: uploads larger than the whole ring, many small ones sharing a
//! slot, and chunks filled by several threads all arrive intact (read back and compared).

use super::{Gpu, Rng};
use crate::engine::vulkan::buffer::{Buffer, MemKind};
use crate::engine::vulkan::upload::{download, Uploader, SLOTS};

#[test]
fn staging_ring_delivers_every_byte() {
    let gpu = Gpu::new();
    let mut rng = Rng::new(5);
    // 3 MiB chunks: a 1 MiB+ piece per fill thread, so the threaded fill runs too.
    let chunk = 3 << 20;
    let mut up = Uploader::new(&gpu.dev, chunk).unwrap();
    // Larger than the whole ring (wraps around it twice), with an odd length and offset.
    let big = rng.bytes(2 * SLOTS * chunk as usize + 12_345);
    let big_buf = Buffer::new(&gpu.dev, big.len() as u64 + 8, MemKind::Device, "big").unwrap();
    // Small tensors in between, sharing slots with the big one's pieces.
    let smalls: Vec<Vec<u8>> = (0..40).map(|i| rng.bytes(4 * (i * 37 + 1))).collect();
    let mut small_bufs = Vec::new();
    for (i, s) in smalls.iter().enumerate() {
        let b = Buffer::new(&gpu.dev, s.len() as u64, MemKind::Device, "small").unwrap();
        up.upload(&b, 0, s).unwrap();
        small_bufs.push(b);
        if i == 20 {
            up.upload(&big_buf, 8, &big).unwrap();
        }
    }
    up.finish().unwrap();
    assert_eq!(
        up.bytes,
        big.len() as u64 + smalls.iter().map(|s| s.len() as u64).sum::<u64>()
    );
    let back = download(&gpu.dev, &big_buf, 8, big.len() as u64).unwrap();
    assert!(back == big, "the large upload came back different");
    for (s, b) in smalls.iter().zip(&small_bufs) {
        assert_eq!(&download(&gpu.dev, b, 0, s.len() as u64).unwrap(), s);
    }
    // The ring is reusable after `finish`.
    let again = rng.bytes(1000);
    let b = Buffer::new(&gpu.dev, 1000, MemKind::Device, "again").unwrap();
    up.upload(&b, 0, &again).unwrap();
    up.finish().unwrap();
    assert_eq!(download(&gpu.dev, &b, 0, 1000).unwrap(), again);
    drop(up);
    gpu.check();
}
