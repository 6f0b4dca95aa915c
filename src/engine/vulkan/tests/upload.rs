//! The staging ring on lavapipe: uploads larger than the whole ring, many small ones sharing a
//! slot, and chunks filled by several threads all arrive intact (read back and compared); so do
//! weight buffers filled in place (mapped: lavapipe's memory is the host's).

use super::{Gpu, Rng};
use crate::engine::vulkan::buffer::{Buffer, MemKind};
use crate::engine::vulkan::upload::{download, Uploader, SLOTS};

/// Uploads a large buffer and 40 small ones of `kind` (`in_place`: mapped ones filled in place)
/// and reads every byte back; returns the staging buffers the uploader allocated.
fn uploads_arrive(gpu: &Gpu, kind: MemKind, in_place: bool, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    // 3 MiB chunks: a 1 MiB+ piece per fill thread, so the threaded fill runs too.
    let chunk = 3 << 20;
    let mut up = Uploader::new(&gpu.dev, chunk).unwrap();
    up.set_in_place(in_place);
    // Larger than the whole ring (wraps around it twice), with an odd length and offset.
    let big = rng.bytes(2 * SLOTS * chunk as usize + 12_345);
    let mut big_buf = Buffer::new(&gpu.dev, big.len() as u64 + 8, kind, "big").unwrap();
    // Small tensors in between, sharing slots with the big one's pieces.
    let smalls: Vec<Vec<u8>> = (0..40).map(|i| rng.bytes(4 * (i * 37 + 1))).collect();
    let mut small_bufs = Vec::new();
    for (i, s) in smalls.iter().enumerate() {
        let mut b = Buffer::new(&gpu.dev, s.len() as u64, kind, "small").unwrap();
        up.upload(&mut b, 0, s).unwrap();
        small_bufs.push(b);
        if i == 20 {
            up.upload(&mut big_buf, 8, &big).unwrap();
        }
    }
    up.finish().unwrap();
    assert_eq!(
        up.bytes,
        big.len() as u64 + smalls.iter().map(|s| s.len() as u64).sum::<u64>()
    );
    let back = download(&gpu.dev, &big_buf, 8, big.len() as u64).unwrap();
    assert!(
        back == big,
        "the large upload came back different ({kind:?}, in place {in_place})"
    );
    for (s, b) in smalls.iter().zip(&small_bufs) {
        assert_eq!(&download(&gpu.dev, b, 0, s.len() as u64).unwrap(), s);
    }
    // The uploader is reusable after `finish`.
    let again = rng.bytes(1000);
    let mut b = Buffer::new(&gpu.dev, 1000, kind, "again").unwrap();
    up.upload(&mut b, 0, &again).unwrap();
    up.finish().unwrap();
    assert_eq!(download(&gpu.dev, &b, 0, 1000).unwrap(), again);
    up.staging_buffers()
}

#[test]
fn staging_ring_delivers_every_byte() {
    let gpu = Gpu::new();
    assert_eq!(uploads_arrive(&gpu, MemKind::Device, true, 5), SLOTS);
    // Mapped weight buffers sent through staging anyway: the ring's path on them.
    assert_eq!(uploads_arrive(&gpu, MemKind::Weights, false, 6), SLOTS);
    gpu.check();
}

/// On a CPU implementation weight buffers are mapped and filled in place: what the engine
/// reads is what was uploaded, with no staging copy.
#[test]
fn weights_filled_in_place_deliver_every_byte() {
    let gpu = Gpu::new();
    let probe = Buffer::new(&gpu.dev, 16, MemKind::Weights, "probe").unwrap();
    assert!(
        probe.is_mapped(),
        "lavapipe's weight buffers are mapped (Choices::weights_in_place)"
    );
    assert!(
        !Buffer::new(&gpu.dev, 16, MemKind::Device, "probe")
            .unwrap()
            .is_mapped(),
        "other device buffers are not"
    );
    assert_eq!(
        uploads_arrive(&gpu, MemKind::Weights, true, 7),
        0,
        "filled in place: no staging buffer"
    );
    gpu.check();
}
