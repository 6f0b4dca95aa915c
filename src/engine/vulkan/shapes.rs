//! Mat-vec shapes (workgroup size, rows per workgroup, path) and the device limits that bound
//! them: every shape the engine uses goes through `fit`, so no tuning knob or device default can
//! ask for more shared memory or a larger workgroup than the device allows.

use super::device::Device;

/// Mat-vec paths (the third number of a shape), defined beside the choices that pick them.
pub use super::choices::{PATH_LANE, PATH_SUBGROUP, PATH_TREE};

/// Largest rows per workgroup a shape may ask for.
pub const MAX_ROWS: u32 = 16;

/// The device limits a shape must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `maxComputeSharedMemorySize`, bytes.
    pub shared_bytes: u32,
    /// min(`maxComputeWorkGroupSize[0]`, `maxComputeWorkGroupInvocations`).
    pub max_wg: u32,
    /// Subgroup arithmetic in compute shaders.
    pub subgroup_arith: bool,
}

impl Limits {
    /// An NVIDIA H200 as measured (48 KiB shared memory, 1024 invocations, subgroup 32).
    #[cfg(test)]
    pub const NVIDIA_48K: Limits = Limits {
        shared_bytes: 48 * 1024,
        max_wg: 1024,
        subgroup_arith: true,
    };
    /// Lavapipe (Mesa 22.3): 32 KiB shared memory, 1024 invocations, subgroup 8.
    #[cfg(test)]
    pub const LAVAPIPE: Limits = Limits {
        shared_bytes: 32 * 1024,
        max_wg: 1024,
        subgroup_arith: true,
    };

    pub fn of(dev: &Device) -> Limits {
        let l = &dev.limits;
        Limits {
            shared_bytes: l.max_compute_shared_memory_size,
            max_wg: l.max_compute_work_group_size[0].min(l.max_compute_work_group_invocations),
            subgroup_arith: dev.features.subgroup_arith,
        }
    }
}

/// Shared memory, bytes, that the mat-vec shader of `shape` declares for `nt` tokens per
/// workgroup (matvec.comp: `red[ROWS·2·NT·WG]`; matvec_sg.comp: `part[(ROWS·2 + 1)·WG]`).
pub fn shared_bytes(shape: [u32; 3], nt: u32) -> u64 {
    let [wg, rows, path] = shape.map(u64::from);
    if path == PATH_SUBGROUP as u64 {
        (rows * 2 + 1) * wg * 4
    } else if path == PATH_LANE as u64 {
        // shaders/matvec.comp: the tree's reduction array is one float on the lane path.
        4
    } else {
        rows * 2 * u64::from(nt) * wg * 4
    }
}

/// `shape` made valid for `lim` with `nt` tokens per workgroup: an unknown path, or the subgroup
/// path without subgroup arithmetic or with more than one token, becomes the tree path; the
/// workgroup size becomes a power of two within `max_wg`; rows are clamped to 1..=MAX_ROWS; then
/// rows, and after them the workgroup, are halved until the shared memory fits.
pub fn fit(shape: [u32; 3], nt: u32, lim: &Limits) -> [u32; 3] {
    let [wg, rows, path] = shape;
    let path = match path {
        PATH_LANE => PATH_LANE,
        PATH_SUBGROUP if lim.subgroup_arith && nt == 1 => PATH_SUBGROUP,
        _ => PATH_TREE,
    };
    let cap = lim.max_wg.max(1);
    let mut wg = wg.clamp(1, cap);
    if !wg.is_power_of_two() {
        wg = wg.next_power_of_two() / 2;
    }
    let mut rows = rows.clamp(1, MAX_ROWS);
    while shared_bytes([wg, rows, path], nt) > u64::from(lim.shared_bytes) {
        if rows > 1 {
            rows /= 2;
        } else if wg > 1 {
            wg /= 2;
        } else {
            break;
        }
    }
    [wg, rows, path]
}

/// Matrices taller than this (the LM head) get a shape of their own (`for_matrix`).
pub const TALL_ROWS: u32 = 8192;

/// Rows per invocation of the lane path for matrices taller than `TALL_ROWS`.
pub const LANE_TALL_ROWS: u32 = 16;

/// The shape for a decode mat-vec of `rows` × `k` given the device's base shape: on the subgroup
/// path, 32 lanes for very tall matrices (the LM head) or short rows (k < 1024), where a wide
/// workgroup would leave lanes idle or launch too few rows per SM; on the lane path (CPU
/// implementations), at least `LANE_TALL_ROWS` rows per invocation for very tall matrices: on
/// lavapipe the head's weight fetches miss the cache, and twice the rows per invocation give
/// each unit twice the independent fetches to overlap (docs/vulkan.md, "The LM head on
/// lavapipe").
pub fn for_matrix(base: [u32; 3], rows: u32, k: u32, lim: &Limits) -> [u32; 3] {
    if base[2] == PATH_SUBGROUP && (rows > TALL_ROWS || k < 1024) {
        return fit([base[0].min(32), base[1], base[2]], 1, lim);
    }
    if base[2] == PATH_LANE && rows > TALL_ROWS && base[1] < LANE_TALL_ROWS {
        return fit([base[0], LANE_TALL_ROWS, base[2]], 1, lim);
    }
    base
}
