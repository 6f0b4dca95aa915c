//! Every kernel variant the engine can choose, read from its SPIR-V: the workgroup (shared)
//! memory its `shared` arrays take and its workgroup size, with the specialization constants the
//! choosers give it, against an NVIDIA device's limits (48 KiB, 1024 invocations, subgroup 32),
//! lavapipe's (32 KiB) and a small device's. The choosers (`shapes::fit`,
//! `attention::staged_shape`, `Tile::fits`, the prompt attention's tile) decide from byte counts
//! written by hand beside each shader; these tests hold each of those counts to the shader's own
//! declarations, so a shared array added to a shader without its count fails here and not on a
//! GPU (the H200 run's `128,8,0` mat-mat asked 64 KiB of a 48 KiB device). No device is needed.

use std::collections::{BTreeSet, HashMap};

use ash::vk;

use crate::engine::vulkan::attention::{staged_shape, MAX_GROUP, SPLIT_WG};
use crate::engine::vulkan::choices::MATMUL_NT;
use crate::engine::vulkan::kernels::MAX_SEG;
use crate::engine::vulkan::shaders;
use crate::engine::vulkan::shapes::{self, Limits, PATH_SUBGROUP, PATH_TREE};
use crate::engine::vulkan::tiled::{
    attn_shared_bytes, lanes_heads, lanes_shape, ATTN_BR, ATTN_WG, LANES_KB, TILES,
};
use crate::engine::vulkan::TiledKernel;

/// What a shader asks of the device for one set of specialization constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    /// Bytes of its `Workgroup` variables, each the plain sum of its elements' sizes.
    shared: u64,
    /// Its workgroup size (x, y, z).
    local: [u64; 3],
}

impl Usage {
    fn invocations(&self) -> u64 {
        self.local.iter().product()
    }
}

/// The instructions of a SPIR-V module that decide its shared memory and workgroup size
/// (decorations, execution modes, types, constants, variables), kept in order; function bodies
/// are dropped.
struct Module {
    insts: Vec<(u32, Vec<u32>)>,
}

const OP_EXECUTION_MODE: u32 = 16;
const OP_TYPE_BOOL: u32 = 20;
const OP_TYPE_INT: u32 = 21;
const OP_TYPE_FLOAT: u32 = 22;
const OP_TYPE_VECTOR: u32 = 23;
const OP_TYPE_MATRIX: u32 = 24;
const OP_TYPE_ARRAY: u32 = 28;
const OP_TYPE_STRUCT: u32 = 30;
const OP_TYPE_POINTER: u32 = 32;
const OP_CONSTANT_TRUE: u32 = 41;
const OP_CONSTANT_FALSE: u32 = 42;
const OP_CONSTANT: u32 = 43;
const OP_CONSTANT_COMPOSITE: u32 = 44;
const OP_SPEC_CONSTANT_TRUE: u32 = 48;
const OP_SPEC_CONSTANT_FALSE: u32 = 49;
const OP_SPEC_CONSTANT: u32 = 50;
const OP_SPEC_CONSTANT_COMPOSITE: u32 = 51;
const OP_SPEC_CONSTANT_OP: u32 = 52;
const OP_VARIABLE: u32 = 59;
const OP_DECORATE: u32 = 71;
const OP_EXECUTION_MODE_ID: u32 = 331;
const KEPT: [u32; 20] = [
    OP_EXECUTION_MODE,
    OP_TYPE_BOOL,
    OP_TYPE_INT,
    OP_TYPE_FLOAT,
    OP_TYPE_VECTOR,
    OP_TYPE_MATRIX,
    OP_TYPE_ARRAY,
    OP_TYPE_STRUCT,
    OP_TYPE_POINTER,
    OP_CONSTANT_TRUE,
    OP_CONSTANT_FALSE,
    OP_CONSTANT,
    OP_CONSTANT_COMPOSITE,
    OP_SPEC_CONSTANT_TRUE,
    OP_SPEC_CONSTANT_FALSE,
    OP_SPEC_CONSTANT,
    OP_SPEC_CONSTANT_COMPOSITE,
    OP_SPEC_CONSTANT_OP,
    OP_VARIABLE,
    OP_DECORATE,
];
const DECORATION_SPEC_ID: u32 = 1;
const DECORATION_BUILT_IN: u32 = 11;
const BUILT_IN_WORKGROUP_SIZE: u32 = 25;
const MODE_LOCAL_SIZE: u32 = 17;
const MODE_LOCAL_SIZE_ID: u32 = 38;
const STORAGE_WORKGROUP: u32 = 4;

impl Module {
    fn parse(name: &str, bytes: &[u8]) -> Module {
        assert!(
            bytes.len().is_multiple_of(4) && bytes.len() >= 20,
            "{name}: not SPIR-V"
        );
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words[0], 0x0723_0203, "{name}: SPIR-V magic");
        let mut insts = Vec::new();
        let mut i = 5;
        while i < words.len() {
            let (count, op) = ((words[i] >> 16) as usize, words[i] & 0xffff);
            assert!(
                count >= 1 && i + count <= words.len(),
                "{name}: instruction at word {i}"
            );
            if KEPT.contains(&op) || op == OP_EXECUTION_MODE_ID {
                insts.push((op, words[i + 1..i + count].to_vec()));
            }
            i += count;
        }
        Module { insts }
    }

    /// The module's usage with specialization constant `k` set to `spec[k]` (the engine's
    /// `SpecializationMapEntry`s: constant id = index); constants without an entry keep their
    /// defaults. Fails on an operation it cannot evaluate.
    fn usage(&self, spec: &[u32]) -> Result<Usage, String> {
        let mut spec_id = HashMap::new();
        let mut wg_size_id = None;
        for (op, a) in &self.insts {
            if *op == OP_DECORATE && a.len() >= 3 {
                match a[1] {
                    DECORATION_SPEC_ID => {
                        spec_id.insert(a[0], a[2]);
                    }
                    DECORATION_BUILT_IN if a[2] == BUILT_IN_WORKGROUP_SIZE => {
                        wg_size_id = Some(a[0])
                    }
                    _ => {}
                }
            }
        }
        let mut value: HashMap<u32, u64> = HashMap::new();
        let mut parts: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut size: HashMap<u32, u64> = HashMap::new();
        let mut pointee: HashMap<u32, (u32, u32)> = HashMap::new();
        let mut local_lit = None;
        let mut local_ids = None;
        let mut shared = 0u64;
        let get = |value: &HashMap<u32, u64>, id: u32| {
            value
                .get(&id)
                .copied()
                .ok_or_else(|| format!("%{id} is no constant"))
        };
        let spec_of = |id: u32, default: u64| match spec_id.get(&id) {
            Some(&k) if (k as usize) < spec.len() => u64::from(spec[k as usize]),
            _ => default,
        };
        for (op, a) in &self.insts {
            match *op {
                OP_EXECUTION_MODE if a[1] == MODE_LOCAL_SIZE => {
                    local_lit = Some([a[2], a[3], a[4]].map(u64::from))
                }
                OP_EXECUTION_MODE_ID if a[1] == MODE_LOCAL_SIZE_ID => {
                    local_ids = Some([a[2], a[3], a[4]])
                }
                OP_TYPE_BOOL => {
                    size.insert(a[0], 4);
                }
                OP_TYPE_INT | OP_TYPE_FLOAT => {
                    size.insert(a[0], u64::from(a[1] / 8));
                }
                // Types of unknown size (runtime arrays, images, buffer blocks holding them)
                // get none; only a `Workgroup` variable's type must be known.
                OP_TYPE_VECTOR | OP_TYPE_MATRIX => {
                    if let Some(s) = size.get(&a[1]) {
                        size.insert(a[0], s * u64::from(a[2]));
                    }
                }
                OP_TYPE_ARRAY => {
                    if let Some(s) = size.get(&a[1]) {
                        size.insert(a[0], s * get(&value, a[2])?);
                    }
                }
                OP_TYPE_STRUCT => {
                    let s: Option<u64> = a[1..].iter().map(|m| size.get(m)).sum();
                    if let Some(s) = s {
                        size.insert(a[0], s);
                    }
                }
                OP_TYPE_POINTER => {
                    pointee.insert(a[0], (a[1], a[2]));
                }
                OP_CONSTANT_TRUE => {
                    value.insert(a[1], 1);
                }
                OP_CONSTANT_FALSE => {
                    value.insert(a[1], 0);
                }
                OP_SPEC_CONSTANT_TRUE => {
                    value.insert(a[1], u64::from(spec_of(a[1], 1) != 0));
                }
                OP_SPEC_CONSTANT_FALSE => {
                    value.insert(a[1], u64::from(spec_of(a[1], 0) != 0));
                }
                OP_CONSTANT => {
                    value.insert(a[1], u64::from(a[2]));
                }
                OP_SPEC_CONSTANT => {
                    value.insert(a[1], spec_of(a[1], u64::from(a[2])));
                }
                OP_CONSTANT_COMPOSITE | OP_SPEC_CONSTANT_COMPOSITE => {
                    parts.insert(a[1], a[2..].to_vec());
                }
                OP_SPEC_CONSTANT_OP => {
                    let v = eval(a[2], &a[3..], &value, &parts)?;
                    value.insert(a[1], v);
                }
                OP_VARIABLE if a[2] == STORAGE_WORKGROUP => {
                    let (_, t) = pointee.get(&a[0]).ok_or("variable of an unknown pointer")?;
                    shared += size.get(t).ok_or("variable of an unknown type")?;
                }
                _ => {}
            }
        }
        let local = if let Some(id) = wg_size_id {
            let p = parts.get(&id).ok_or("WorkgroupSize is no composite")?;
            [get(&value, p[0])?, get(&value, p[1])?, get(&value, p[2])?]
        } else if let Some(ids) = local_ids {
            [
                get(&value, ids[0])?,
                get(&value, ids[1])?,
                get(&value, ids[2])?,
            ]
        } else {
            local_lit.ok_or("no workgroup size")?
        };
        Ok(Usage { shared, local })
    }
}

/// One `OpSpecConstantOp` on 32-bit integers and booleans (the operations glslc emits for
/// constant expressions of specialization constants).
fn eval(
    op: u32,
    ids: &[u32],
    value: &HashMap<u32, u64>,
    parts: &HashMap<u32, Vec<u32>>,
) -> Result<u64, String> {
    let arg = |i: usize| -> Result<u64, String> {
        let id = *ids
            .get(i)
            .ok_or_else(|| format!("op {op}: operand {i} missing"))?;
        value
            .get(&id)
            .copied()
            .ok_or_else(|| format!("op {op}: %{id} is no constant"))
    };
    let m = |x: u64| x & 0xffff_ffff;
    let s = |x: u64| x as u32 as i32 as i64;
    let b = |c: bool| u64::from(c);
    let div = |x: u64, y: u64| {
        x.checked_div(y)
            .ok_or_else(|| format!("op {op}: division by zero"))
    };
    Ok(match op {
        // OpCompositeExtract: composite, one literal index.
        81 => {
            let p = parts
                .get(&ids[0])
                .ok_or_else(|| format!("op 81: %{} is no composite", ids[0]))?;
            let id = p.get(ids[1] as usize).ok_or("op 81: index out of range")?;
            *value.get(id).ok_or("op 81: part is no constant")?
        }
        113 | 114 | 124 => arg(0)?, // UConvert, SConvert, Bitcast (32-bit only here)
        126 => m(0u64.wrapping_sub(arg(0)?)), // SNegate
        128 => m(arg(0)? + arg(1)?),
        130 => m(arg(0)?.wrapping_sub(arg(1)?)),
        132 => m(arg(0)? * arg(1)?),
        134 => div(arg(0)?, arg(1)?)?,
        135 => {
            let (x, y) = (s(arg(0)?), s(arg(1)?));
            m(x.checked_div(y).ok_or("op 135: division by zero")? as u64)
        }
        137 => arg(0)?
            .checked_rem(arg(1)?)
            .ok_or("op 137: division by zero")?,
        164 | 170 => b(arg(0)? == arg(1)?),
        165 | 171 => b(arg(0)? != arg(1)?),
        166 => b(arg(0)? != 0 || arg(1)? != 0),
        167 => b(arg(0)? != 0 && arg(1)? != 0),
        168 => b(arg(0)? == 0),
        169 => {
            if arg(0)? != 0 {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        172 => b(arg(0)? > arg(1)?),
        173 => b(s(arg(0)?) > s(arg(1)?)),
        174 => b(arg(0)? >= arg(1)?),
        175 => b(s(arg(0)?) >= s(arg(1)?)),
        176 => b(arg(0)? < arg(1)?),
        177 => b(s(arg(0)?) < s(arg(1)?)),
        178 => b(arg(0)? <= arg(1)?),
        179 => b(s(arg(0)?) <= s(arg(1)?)),
        194 => arg(0)? >> (arg(1)? & 31),
        196 => m(arg(0)? << (arg(1)? & 31)),
        197 => arg(0)? | arg(1)?,
        198 => arg(0)? ^ arg(1)?,
        199 => arg(0)? & arg(1)?,
        200 => m(!arg(0)?),
        _ => {
            return Err(format!(
                "OpSpecConstantOp with opcode {op} is not evaluated"
            ))
        }
    })
}

/// A device as the choosers see it.
struct Dev {
    name: &'static str,
    lim: Limits,
    vk: vk::PhysicalDeviceLimits,
    /// Smallest and largest subgroup size.
    subgroups: (u32, u32),
}

fn dev(name: &'static str, lim: Limits, subgroups: (u32, u32)) -> Dev {
    let vk = vk::PhysicalDeviceLimits {
        max_compute_shared_memory_size: lim.shared_bytes,
        max_compute_work_group_invocations: lim.max_wg,
        max_compute_work_group_size: [lim.max_wg, lim.max_wg, 64],
        ..Default::default()
    };
    Dev {
        name,
        lim,
        vk,
        subgroups,
    }
}

fn devices() -> Vec<Dev> {
    vec![
        dev("NVIDIA (H100/H200)", Limits::NVIDIA_48K, (32, 32)),
        dev("lavapipe", Limits::LAVAPIPE, (8, 8)),
        // The least the engine takes (device.rs: MIN_SHARED_MEMORY, the sampler's 17 KiB).
        dev(
            "small",
            Limits {
                shared_bytes: 17 * 1024,
                max_wg: 256,
                subgroup_arith: true,
            },
            (16, 16),
        ),
    ]
}

/// Parsed modules by name, each parsed once.
struct Shaders(HashMap<String, Module>);

impl Shaders {
    fn new() -> Shaders {
        Shaders(HashMap::new())
    }

    /// `spirv`'s usage with `spec`; `want`, where the engine's chooser counts the shader's shared
    /// memory itself, must equal the shader's declarations.
    fn usage(&mut self, name: &str, spirv: &[u8], spec: &[u32], want: Option<u64>) -> Usage {
        let m = self
            .0
            .entry(name.to_string())
            .or_insert_with(|| Module::parse(name, spirv));
        let u = m
            .usage(spec)
            .unwrap_or_else(|e| panic!("{name} with {spec:?}: {e}"));
        if let Some(w) = want {
            assert_eq!(
                u.shared, w,
                "{name} with {spec:?}: the shader declares {} bytes of shared memory, the \
                 engine counts {w}",
                u.shared
            );
        }
        u
    }

    /// As `usage`, and the variant must fit `d`: shared memory, invocations, x size.
    fn check(&mut self, d: &Dev, name: &str, spirv: &[u8], spec: &[u32], want: Option<u64>) {
        let u = self.usage(name, spirv, spec, want);
        let what = format!("{}: {name} with {spec:?} ({u:?})", d.name);
        assert!(
            u.shared <= u64::from(d.lim.shared_bytes),
            "{what}: {} bytes of shared memory, the device has {}",
            u.shared,
            d.lim.shared_bytes
        );
        assert!(
            u.invocations() <= u64::from(d.lim.max_wg) && u.local[0] <= u64::from(d.lim.max_wg),
            "{what}: more invocations than the device's {}",
            d.lim.max_wg
        );
        assert!(u.invocations() >= 1, "{what}: an empty workgroup");
    }
}

/// Every weight type's variant of a family and its `any` variant.
fn family(
    prefix: &str,
    by_type: fn(u32) -> Option<&'static [u8]>,
    any: &'static [u8],
) -> Vec<(String, &'static [u8])> {
    let mut v: Vec<(String, &'static [u8])> = shaders::WEIGHT_TYPE_IDS
        .iter()
        .map(|&id| {
            let code = by_type(id).unwrap_or_else(|| panic!("{prefix}: type {id} has no shader"));
            (format!("{prefix}_{id}"), code)
        })
        .collect();
    v.push((format!("{prefix}_any"), any));
    v
}

/// Workgroup sizes and rows a mat-vec knob (`PIGPU_VK_MATVEC` / `PIGPU_VK_MATMUL`) may ask for.
const KNOB_WGS: [u32; 14] = [0, 1, 3, 8, 16, 32, 48, 64, 100, 128, 256, 512, 1024, 4096];

#[test]
fn the_reader_sees_what_the_shaders_declare() {
    let mut sh = Shaders::new();
    // norm_add.comp: `shared float red[64]`, local_size_x = 64.
    let u = sh.usage("norm_add", shaders::NORM_ADD, &[], None);
    assert_eq!(
        u,
        Usage {
            shared: 256,
            local: [64, 1, 1]
        }
    );
    // rms_norm.comp: `shared float red[WG]`, WG the workgroup size (constant 0).
    for wg in [64, 256] {
        let u = sh.usage("rms_norm", shaders::RMS_NORM, &[wg], None);
        assert_eq!(
            u,
            Usage {
                shared: 4 * u64::from(wg),
                local: [u64::from(wg), 1, 1]
            }
        );
    }
    // glslc gives the workgroup size its own constant under the same id, whose default is 1:
    // the entry sets both (attention.comp: `qs[256]`, `ps[WG]`, `red[WG]`, and the reductions'
    // eight partials `part_max[8]`, `part_sum[8]`).
    let u = sh.usage("attention", shaders::ATTENTION, &[32], None);
    assert_eq!(
        u,
        Usage {
            shared: 4 * (256 + 2 * 32 + 2 * 8),
            local: [32, 1, 1]
        }
    );
    assert_eq!(
        sh.usage("attention", shaders::ATTENTION, &[], None).local,
        [1, 1, 1]
    );
    // With RoPE folded in (`ROPE`), the new position's K and V rows are staged too (`ks`, `vs`).
    let u = sh.usage("attention_rope", shaders::ATTENTION_ROPE, &[32], None);
    assert_eq!(
        u,
        Usage {
            shared: 4 * (3 * 256 + 2 * 32 + 2 * 8),
            local: [32, 1, 1]
        }
    );
    // The rows split kernel (attention_split.comp: `qs[8 * 256]`, `ps[8 * WG]`, `red[8 * WG]`
    // at GMAX = 8); with RoPE folded in the new position's K and V rows as cache words too
    // (`kn[128]`, `vn[128]`).
    let split = sh.usage("attention_split", shaders::ATTENTION_SPLIT, &[64, 8], None);
    assert_eq!(split.shared, 4 * (8 * 256 + 2 * 8 * 64));
    let code = shaders::ATTENTION_SPLIT_ROPE;
    let u = sh.usage("attention_split_rope", code, &[64, 8], None);
    assert_eq!(
        u,
        Usage {
            shared: split.shared + 4 * 2 * 128,
            local: [64, 1, 1]
        }
    );
    // The mat-mat shape that failed on the H200: 8 rows of 128 lanes for 8 tokens ask 64 KiB,
    // more than the 48 KiB of an NVIDIA device; `shapes::fit` gives it 4 rows there.
    let asked = [128, 8, PATH_TREE];
    let u = sh.usage("matmul_any", shaders::MATMUL_ANY, &asked, None);
    assert_eq!(u.shared, 64 * 1024);
    assert!(u.shared > u64::from(Limits::NVIDIA_48K.shared_bytes));
    let fitted = shapes::fit(asked, MATMUL_NT, &Limits::NVIDIA_48K);
    let u = sh.usage("matmul_any", shaders::MATMUL_ANY, &fitted, None);
    assert!(
        u.shared <= u64::from(Limits::NVIDIA_48K.shared_bytes),
        "{fitted:?}: {u:?}"
    );
}

/// The decode mat-vec (storage and texel reads, subgroup path), the 8-token mat-mat: every
/// shape a knob or default can become through `shapes::fit` (and `shapes::for_matrix`), every
/// weight type.
#[test]
fn every_matvec_shape_the_engine_can_choose_fits_each_device() {
    let mut sh = Shaders::new();
    let matvec = family("matvec", shaders::matvec_for, shaders::MATVEC_ANY);
    let matvect = family("matvect", shaders::matvect_for, shaders::MATVECT_ANY);
    let matvecsg = family("matvecsg", shaders::matvecsg_for, shaders::MATVECSG_ANY);
    let mut matmul = family("matmul", shaders::matmul_for, shaders::MATMUL_ANY);
    // The lane path's `any` mat-mat, built without glslc's optimizer (build.rs: LANE_ANY).
    matmul.push(("matmul_any_lane".into(), shaders::MATMUL_ANY_LANE));
    for d in devices() {
        for nt in [1, MATMUL_NT] {
            let mut fitted = BTreeSet::new();
            for wg in KNOB_WGS {
                for rows in 0..=20 {
                    for path in 0..4 {
                        let s = shapes::fit([wg, rows, path], nt, &d.lim);
                        fitted.insert(s);
                        if nt == 1 {
                            for (m, k) in [(128_256, 3072), (3072, 576), (3072, 3072)] {
                                fitted.insert(shapes::for_matrix(s, m, k, &d.lim));
                            }
                        }
                    }
                }
            }
            for s in fitted {
                let want = Some(shapes::shared_bytes(s, nt));
                if nt == MATMUL_NT {
                    for (name, code) in &matmul {
                        sh.check(&d, name, code, &s, want);
                    }
                } else if s[2] == PATH_SUBGROUP {
                    for (name, code) in &matvecsg {
                        sh.check(&d, name, code, &s, want);
                    }
                } else {
                    for (name, code) in &matvec {
                        sh.check(&d, name, code, &s, want);
                    }
                    for nseg in 1..=MAX_SEG as u32 {
                        for (name, code) in &matvect {
                            sh.check(&d, name, code, &[s[0], s[1], s[2], nseg], want);
                        }
                    }
                }
            }
        }
    }
}

/// The tiled prompt mat-mat in every form: each tile's count is the shader's, and every tile a
/// device accepts (`Tile::fits_for`) fits it; on NVIDIA all three tiles of every form run.
#[test]
fn every_prompt_tile_the_engine_can_choose_fits_each_device() {
    let mut sh = Shaders::new();
    let scalar = family("tiled", shaders::tiled_for, shaders::TILED_ANY);
    let vec4 = family("tiledv", shaders::tiledv_for, shaders::TILEDV_ANY);
    for d in devices() {
        for form in [
            TiledKernel::Scalar,
            TiledKernel::Vec4,
            TiledKernel::Vec4Prefetch,
        ] {
            for tile in TILES {
                let mut spec = tile.spec().to_vec();
                let codes = match form {
                    TiledKernel::Scalar => &scalar,
                    TiledKernel::Vec4 => {
                        spec.push(0);
                        &vec4
                    }
                    TiledKernel::Vec4Prefetch => {
                        spec.push(1);
                        &vec4
                    }
                };
                let want = Some(u64::from(tile.shared_bytes()));
                for (name, code) in codes {
                    if tile.fits_for(form, &d.vk) {
                        sh.check(&d, name, code, &spec, want);
                    } else {
                        sh.usage(name, code, &spec, want);
                    }
                }
                if d.name.starts_with("NVIDIA") {
                    assert!(tile.fits_for(form, &d.vk), "{form:?} {}", tile.name);
                }
            }
        }
    }
}

/// The attention kernels: the staged split kernel at every head size and group it serves
/// (`staged_shape`), the rows split kernel, the combine, the one-row kernel, and the prompt
/// attention at every even head size with each key tile whose count fits, and the lanes
/// prompt attention (`lanes_shape`: no shared memory, one subgroup per workgroup) at every even
/// head size where the device's fixed subgroup allows it, with each count of heads per
/// workgroup `lanes_heads` picks for groups up to `MAX_GROUP`.
#[test]
fn every_attention_kernel_the_engine_can_choose_fits_each_device() {
    let mut sh = Shaders::new();
    for d in devices() {
        let mut staged = 0;
        for hd in (8..=256).step_by(8) {
            for g in 1..=MAX_GROUP {
                if let Some(s) = staged_shape(&d.lim, d.subgroups, true, hd, g) {
                    let want = Some(s.shared_bytes());
                    sh.check(
                        &d,
                        "attention_staged",
                        shaders::ATTENTION_STAGED,
                        &s.spec(),
                        want,
                    );
                    // RoPE folded in (`PIGPU_VK_ROPE=fold`): the same shared memory (the new
                    // position's rows are staged in the K/V tiles).
                    sh.check(
                        &d,
                        "attention_staged_rope",
                        shaders::ATTENTION_STAGED_ROPE,
                        &s.spec(),
                        want,
                    );
                    staged += 1;
                }
            }
        }
        if d.name.starts_with("NVIDIA") {
            assert_eq!(
                staged,
                32 * MAX_GROUP,
                "NVIDIA runs the staged kernel everywhere"
            );
        }
        for g in 1..=MAX_GROUP {
            let spec = [SPLIT_WG, g];
            sh.check(&d, "attention_split", shaders::ATTENTION_SPLIT, &spec, None);
            let code = shaders::ATTENTION_SPLIT_ROPE;
            sh.check(&d, "attention_split_rope", code, &spec, None);
        }
        let combine = [SPLIT_WG];
        sh.check(
            &d,
            "attention_combine",
            shaders::ATTENTION_COMBINE,
            &combine,
            None,
        );
        sh.check(&d, "attention", shaders::ATTENTION, &[64], None);
        sh.check(&d, "attention_rope", shaders::ATTENTION_ROPE, &[64], None);
        for hd in (2..=256).step_by(2) {
            let mut fits = 0;
            for bc in [32, 16] {
                let spec = [ATTN_WG, ATTN_BR, bc, hd];
                let want = attn_shared_bytes(hd, bc);
                let code = shaders::ATTENTION_PROMPT;
                if want <= d.lim.shared_bytes && ATTN_WG <= d.lim.max_wg {
                    sh.check(&d, "attention_prompt", code, &spec, Some(u64::from(want)));
                    fits += 1;
                } else {
                    sh.usage("attention_prompt", code, &spec, Some(u64::from(want)));
                }
            }
            if d.name.starts_with("NVIDIA") {
                assert!(
                    fits > 0,
                    "NVIDIA runs the prompt attention at head size {hd}"
                );
            }
            let lanes = lanes_shape(d.subgroups, true, d.lim.max_wg, hd);
            if let Some(sg) = lanes {
                let mut heads: Vec<u32> = (1..=MAX_GROUP).map(|g| lanes_heads(g, hd)).collect();
                heads.sort_unstable();
                heads.dedup();
                // Both forms: K/V through storage buffers and through texel views.
                let forms = [
                    ("attention_lanes", shaders::ATTENTION_LANES),
                    ("attention_lanes_texel", shaders::ATTENTION_LANES_TEXEL),
                ];
                for g in heads {
                    for (name, code) in forms {
                        let spec = [sg, hd, LANES_KB, g];
                        let u = sh.usage(name, code, &spec, Some(0));
                        let what = format!("{}: {name} at {hd}, {g} heads", d.name);
                        assert_eq!(u.local, [u64::from(sg), 1, 1], "{what}");
                        sh.check(&d, name, code, &spec, Some(0));
                    }
                }
            }
            if d.name == "lavapipe" {
                assert_eq!(lanes, Some(8), "lavapipe runs the lanes attention at {hd}");
            }
        }
    }
}

/// The kernels of fixed shape or one workgroup-size constant: embedding, RoPE, sampler, norms
/// and the profiler's empty kernel.
#[test]
fn the_fixed_kernels_fit_each_device() {
    let mut sh = Shaders::new();
    for d in devices() {
        sh.check(&d, "embed", shaders::EMBED, &[64], None);
        sh.check(&d, "sample_one", shaders::SAMPLE, &[128, 1], None);
        sh.check(&d, "sample", shaders::SAMPLE, &[128, 0], None);
        sh.check(&d, "sample_pre", shaders::SAMPLE_PRE, &[128], None);
        // norms.rs: 256 (64 on CPU implementations), halved to the device's cap.
        for want in [64u32, 256] {
            let mut wg = want;
            while wg > d.lim.max_wg {
                wg /= 2;
            }
            sh.check(&d, "rms_norm", shaders::RMS_NORM, &[wg], None);
            sh.check(&d, "rms_norm_sg", shaders::RMS_NORM_SG, &[wg], None);
        }
        for (name, code) in [
            ("qk_norm", shaders::QK_NORM),
            ("norm_add", shaders::NORM_ADD),
            ("rope_kv", shaders::ROPE_KV),
            ("empty", shaders::EMPTY),
        ] {
            sh.check(&d, name, code, &[], None);
        }
    }
}
