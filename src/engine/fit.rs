//! The memory check before loading: does a model (its weights, its KV cache at the context asked
//! for, and the engine's scratch buffers) fit in the memory there is, and if not, what is the
//! largest context that would? A pure function over sizes, so both engines share one rule and
//! the tests can try every edge; the engines gather the sizes (docs/vulkan.md "Memory check",
//! docs/cpu-engine.md) and refuse with the numbers before any upload or long read.

use std::fmt;

use crate::model::{Config, Model};

/// Below this many positions a context is of no use, so a model that leaves room for fewer is
/// refused outright (a smaller model or quantization is the answer, not `--ctx 3`).
const MIN_USEFUL_CTX: usize = 64;

/// What loading a model at a context needs, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Weights kept in this memory: uploaded to the device, or the memory-mapped file resident.
    pub weights: u64,
    /// KV cache per context position (keys and values of every layer).
    pub kv_per_pos: u64,
    /// Everything else the engine allocates (activations, logits, staging), at most.
    pub scratch: u64,
    /// The context asked for.
    pub n_ctx: usize,
}

impl Need {
    /// The KV cache at `n_ctx` positions (saturating: an absurd context is simply too big).
    pub fn kv(&self) -> u64 {
        self.kv_per_pos.saturating_mul(self.n_ctx as u64)
    }

    /// Weights, scratch and KV cache together, in bytes (saturating).
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.scratch)
            .saturating_add(self.kv())
    }

    /// The largest context whose total fits in `available` bytes, if it is at least
    /// `MIN_USEFUL_CTX` positions.
    fn largest_ctx(&self, available: u64) -> Option<usize> {
        let free = available.checked_sub(self.weights.saturating_add(self.scratch))?;
        let n = match self.kv_per_pos {
            0 => usize::MAX,
            per => usize::try_from(free / per).unwrap_or(usize::MAX),
        };
        (n >= MIN_USEFUL_CTX).then_some(n)
    }
}

/// A refused load: what was needed, what there is, where, and the largest context that fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the load needs.
    pub need: Need,
    /// Bytes usable in `place`.
    pub available: u64,
    /// Which memory: e.g. `device memory on NVIDIA GeForce RTX 3060`, `memory (MemAvailable)`.
    pub place: String,
    /// `None`: not even a context of `MIN_USEFUL_CTX` fits.
    pub largest_ctx: Option<usize>,
}

/// The verdict: `Ok` when `need` fits in `available` bytes of `place`.
pub fn check(need: &Need, available: u64, place: &str) -> Result<(), Refusal> {
    if need.total() <= available {
        return Ok(());
    }
    Err(Refusal {
        need: need.clone(),
        available,
        place: place.to_string(),
        largest_ctx: need.largest_ctx(available),
    })
}

/// `92.1 MiB`, `11.3 GiB`: sizes as a person reads them.
pub fn size(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes as f64;
    if b >= 10.0 * GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.need;
        match self.largest_ctx {
            Some(max) => write!(
                f,
                "--ctx {} needs {} for the KV cache, more than the {} left of the {} of {} after \
                 the weights ({}) and scratch ({}); the largest context that fits is --ctx {max}",
                n.n_ctx,
                size(n.kv()),
                size(
                    self.available
                        .saturating_sub(n.weights.saturating_add(n.scratch))
                ),
                size(self.available),
                self.place,
                size(n.weights),
                size(n.scratch),
            ),
            None => write!(
                f,
                "the model does not fit in the {} of {}: its weights ({}) and scratch ({}) leave \
                 no room for a KV cache of {MIN_USEFUL_CTX} positions ({} each); use a smaller \
                 model or quantization",
                size(self.available),
                self.place,
                size(n.weights),
                size(n.scratch),
                size(n.kv_per_pos.saturating_mul(MIN_USEFUL_CTX as u64)),
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// KV bytes per position for `c` with elements of `elem` bytes (keys and values, every layer).
pub fn kv_per_pos(c: &Config, elem: u64) -> u64 {
    (2 * c.n_layer as u64 * c.kv_dim() as u64).saturating_mul(elem)
}

/// What the CPU engine needs in host memory: it computes from the memory-mapped file in place,
/// so the whole file must stay resident (else every token re-reads evicted pages from disk);
/// the KV cache (f16 or f32); and the activations of one prompt batch of up to 512 tokens plus
/// a logits row, an estimate of its scratch.
pub fn cpu_need(model: &Model, n_ctx: usize, kv_f16: bool) -> Need {
    let c = &model.config;
    let per_token = 4 * (2 * c.n_embd + 3 * c.q_dim() + 2 * c.kv_dim() + 2 * c.n_ff) as u64;
    let batch = n_ctx.clamp(1, 512) as u64;
    Need {
        weights: model.file.bytes().len() as u64,
        kv_per_pos: kv_per_pos(c, if kv_f16 { 2 } else { 4 }),
        scratch: per_token * batch + 4 * c.n_vocab as u64,
        n_ctx,
    }
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes: the kernel's estimate of what new
/// allocations can get without swapping, page cache that can be dropped included.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn need(n_ctx: usize) -> Need {
        Need {
            weights: 100 * MIB,
            kv_per_pos: 20 * 1024,
            scratch: 10 * MIB,
            n_ctx,
        }
    }

    #[test]
    fn fits_exactly_at_the_boundary() {
        let n = need(1024);
        assert_eq!(n.total(), 110 * MIB + 20 * MIB);
        assert!(check(&n, n.total(), "memory").is_ok());
        let r = check(&n, n.total() - 1, "memory").unwrap_err();
        assert_eq!(r.largest_ctx, Some(1023));
    }

    #[test]
    fn the_largest_context_fits_and_one_more_does_not() {
        let avail = 200 * MIB;
        let r = check(&need(100_000), avail, "device memory on X").unwrap_err();
        let max = r.largest_ctx.unwrap();
        assert_eq!(max, (90 * MIB / (20 * 1024)) as usize);
        assert!(check(&need(max), avail, "x").is_ok());
        assert!(check(&need(max + 1), avail, "x").is_err());
    }

    #[test]
    fn too_little_room_for_a_useful_context_means_no_suggestion() {
        let n = need(4096);
        // Weights and scratch fit, but fewer than MIN_USEFUL_CTX positions are left.
        let avail = 110 * MIB + 20 * 1024 * (MIN_USEFUL_CTX as u64 - 1);
        assert_eq!(check(&n, avail, "x").unwrap_err().largest_ctx, None);
        let avail = 110 * MIB + 20 * 1024 * MIN_USEFUL_CTX as u64;
        assert_eq!(
            check(&n, avail, "x").unwrap_err().largest_ctx,
            Some(MIN_USEFUL_CTX)
        );
        // Not even the weights.
        assert_eq!(check(&n, 50 * MIB, "x").unwrap_err().largest_ctx, None);
    }

    #[test]
    fn absurd_contexts_saturate_instead_of_overflowing() {
        let n = need(usize::MAX);
        assert_eq!(n.total(), u64::MAX);
        assert!(check(&n, u64::MAX - 1, "x").is_err());
        let free = Need {
            kv_per_pos: 0,
            ..need(usize::MAX)
        };
        assert_eq!(free.largest_ctx(200 * MIB), Some(usize::MAX));
    }

    #[test]
    fn messages_carry_the_numbers() {
        let r = check(&need(8192), 200 * MIB, "device memory on llvmpipe").unwrap_err();
        let msg = r.to_string();
        for want in [
            "--ctx 8192 needs 160.0 MiB for the KV cache, more than the 90.0 MiB left",
            "of the 200.0 MiB of device memory on llvmpipe",
            "weights (100.0 MiB) and scratch (10.0 MiB)",
            "the largest context that fits is --ctx 4608",
        ] {
            assert!(msg.contains(want), "{msg}");
        }
        let msg = check(&need(8192), 64 * MIB, "memory")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("does not fit in the 64.0 MiB of memory"),
            "{msg}"
        );
        assert!(msg.contains("smaller model"), "{msg}");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(92 * MIB + MIB / 10), "92.1 MiB");
        assert_eq!(size(12 << 30), "12.0 GiB");
    }

    #[test]
    fn mem_available_parses_proc_meminfo() {
        let text = "MemTotal:  16000000 kB\nMemFree: 100 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(8_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }
}
