//! Matrix products of packed weights with a batch of activations: `out[t][r] = W[r] · x[t]`.
//! The activations are quantized once per input (to the format the weight type's kernel takes)
//! and shared by every matrix that reads the same input (Q, K, V; gate, up). Output rows are
//! split among the pool's threads; within a thread, a tile of rows is reused across the whole
//! batch so the weights stay in cache during prompt processing.

use super::kernels::{self, ActBlockQ8K, ActFormat, BlockQ8, Dot, Isa, Tile};
use super::pool::{chunk_size, Pool};
use crate::model::{Model, ModelError, Weight};

/// A weight matrix ready for the kernels.
#[derive(Clone, Copy)]
pub struct Mat {
    /// Byte offset of the data in the model file.
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub fmt: ActFormat,
    pub dot: Dot,
    /// The many-rows-and-tokens kernel, where the ISA has one for this type.
    pub tile: Option<Tile>,
}

impl Mat {
    pub fn new(w: &Weight, isa: Isa) -> Result<Mat, ModelError> {
        let (fmt, dot) = kernels::kernel(w.ty, isa).ok_or_else(|| ModelError::UnsupportedType {
            name: w.name.clone(),
            ty: w.ty,
            supported: kernels::SUPPORTED.into(),
        })?;
        let cols = w.cols();
        if !cols.is_multiple_of(w.ty.block_size()) || !cols.is_multiple_of(fmt.block()) {
            return Err(ModelError::BadShape {
                name: w.name.clone(),
                shape: w.shape.clone(),
                expected: vec![cols.next_multiple_of(fmt.block()) as u64, w.rows() as u64],
            });
        }
        Ok(Mat {
            offset: w.file_offset as usize,
            rows: w.rows(),
            cols,
            row_bytes: w.row_bytes(),
            fmt,
            dot,
            tile: kernels::tile(w.ty, isa),
        })
    }

    pub fn data<'m>(&self, model: &'m Model) -> &'m [u8] {
        &model.file.bytes()[self.offset..self.offset + self.rows * self.row_bytes]
    }
}

/// One batch of activations (`n` rows of `k`), quantized lazily to each format asked for.
#[derive(Default)]
pub struct Acts {
    n: usize,
    k: usize,
    f32: Vec<f32>,
    q8_0: Vec<BlockQ8>,
    q8_1: Vec<BlockQ8>,
    q8k: Vec<ActBlockQ8K>,
    have: [bool; 3],
}

impl Acts {
    /// Sets the input (`x.len() == n · k`) and forgets earlier quantizations.
    pub fn set(&mut self, x: &[f32], n: usize, k: usize) {
        debug_assert_eq!(x.len(), n * k);
        self.n = n;
        self.k = k;
        self.f32.clear();
        self.f32.extend_from_slice(x);
        self.have = [false; 3];
    }

    fn prepare(&mut self, fmt: ActFormat) {
        let (n, k) = (self.n, self.k);
        match fmt {
            ActFormat::F32 => {}
            ActFormat::Q8_0 | ActFormat::Q8_1 => {
                let i = usize::from(fmt == ActFormat::Q8_1);
                if !self.have[i] {
                    let buf = if i == 0 {
                        &mut self.q8_0
                    } else {
                        &mut self.q8_1
                    };
                    buf.resize(n * k / 32, BlockQ8::default());
                    kernels::quantize_q8(&self.f32, buf, i == 1);
                    self.have[i] = true;
                }
            }
            ActFormat::Q8K => {
                if !self.have[2] && k % 256 == 0 {
                    self.q8k.resize(n * k / 256, ActBlockQ8K::default());
                    kernels::quantize_q8k(&self.f32, &mut self.q8k);
                    self.have[2] = true;
                }
            }
        }
    }
}

/// A raw pointer to an output buffer that threads write disjoint parts of.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every chunk writes a disjoint set of elements (its own rows) and `Pool::run` waits for
// all threads before the buffer is used again.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// (A method, so closures capture the whole `Sync` wrapper, not the raw field.)
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows per tile: a tile of weight rows is dotted with every activation row before moving on.
const TILE: usize = 16;
/// Bytes of weights a tile should keep in the L1 cache.
const L1_WEIGHTS: usize = 16 << 10;

/// `out[t · m + r] = W[r] · x[t]` for all `t < n`, `r < m` (`out.len() == n · m`).
pub fn matmul(model: &Model, w: &Mat, acts: &mut Acts, out: &mut [f32], pool: &Pool) {
    matmul_many(model, &mut [(w, out)], acts, pool);
}

/// Several products of the same input (Q, K and V; gate and up) in one parallel job, so the
/// threads synchronise once instead of once per matrix: each thread takes its share of every
/// matrix's rows.
pub fn matmul_many(model: &Model, jobs: &mut [(&Mat, &mut [f32])], acts: &mut Acts, pool: &Pool) {
    for (w, out) in jobs.iter() {
        acts.prepare(w.fmt);
        assert_eq!(acts.k, w.cols, "matmul input width");
        assert_eq!(out.len(), acts.n * w.rows, "matmul output size");
    }
    // Chunks of whole TILEs of rows, a few per thread and matrix, taken by whichever thread is
    // free.
    let nt = pool.threads();
    let mut chunks: Vec<(&Mat, &[u8], OutPtr, std::ops::Range<usize>)> = Vec::new();
    for (w, out) in jobs.iter_mut() {
        let (data, outp) = (w.data(model), OutPtr(out.as_mut_ptr()));
        let size = chunk_size(w.rows, nt, 4, TILE);
        for r0 in (0..w.rows).step_by(size) {
            chunks.push((*w, data, outp, r0..(r0 + size).min(w.rows)));
        }
    }
    let acts = &*acts;
    pool.run(chunks.len(), &|c| {
        let (w, data, outp, ref range) = chunks[c];
        rows(w, data, acts, outp, range.clone());
    });
}

/// One chunk of a product: the weight rows `range` against every token of `acts`.
fn rows(w: &Mat, data: &[u8], acts: &Acts, outp: OutPtr, range: std::ops::Range<usize>) {
    let (n, m) = (acts.n, w.rows);
    let bpr = w.cols / w.fmt.block();
    let q8 = if w.fmt == ActFormat::Q8_1 {
        &acts.q8_1
    } else {
        &acts.q8_0
    };
    // Tiles of rows keep a tile's weights in L1 (about 16 KiB of them) while all tokens pass
    // over it: TILE rows, fewer (a multiple of 4) for wide rows.
    let tile = (L1_WEIGHTS / w.row_bytes).clamp(4, TILE) / 4 * 4;
    let mut r0 = range.start;
    while r0 < range.end {
        let r1 = (r0 + tile).min(range.end);
        match (w.tile, w.dot) {
            // SAFETY: the kernel came from `kernels::tile` for this CPU; `out` has n · m
            // elements, rows r0..r1 belong to this chunk alone, and `Pool::run` returns only
            // when every chunk is done, before `out` is used again.
            (Some(Tile::Q8(f)), _) => unsafe { f(data, w.row_bytes, r0..r1, q8, n, outp.get(), m) },
            // SAFETY: as above.
            (Some(Tile::Q8K(f)), _) => unsafe {
                f(data, w.row_bytes, r0..r1, &acts.q8k, n, outp.get(), m)
            },
            (None, dot) => {
                for t in 0..n {
                    for r in r0..r1 {
                        let row = &data[r * w.row_bytes..(r + 1) * w.row_bytes];
                        let v = match dot {
                            Dot::Q8(f) => f(row, &q8[t * bpr..(t + 1) * bpr]),
                            Dot::Q8K(f) => f(row, &acts.q8k[t * bpr..(t + 1) * bpr]),
                            Dot::F32(f) => f(row, &acts.f32[t * w.cols..(t + 1) * w.cols]),
                        };
                        // SAFETY: `t · m + r < n · m == out.len()`, and row `r` belongs to
                        // this chunk only.
                        unsafe { *outp.get().add(t * m + r) = v };
                    }
                }
            }
        }
        r0 = r1;
    }
}
