//! NEON kernels (aarch64 with the dot-product extension, detected at run time). Each is tested against
//! the portable kernel on random blocks.

use super::Dot;
use crate::engine::cpu::ops::{self, KvKernels};
use crate::quant::GgmlType;

/// The NEON kernel for `ty`, if there is one.
pub fn kernel(_ty: GgmlType) -> Option<Dot> {
    None
}

pub fn kv_kernels() -> KvKernels {
    KvKernels {
        dot: ops::dot_f16_portable,
        axpy: ops::axpy_f16_portable,
    }
}
