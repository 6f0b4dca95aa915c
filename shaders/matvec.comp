#version 450
// Matrix x vector(s) for quantized weights: y = W · x, for NT tokens per workgroup (NT = 1 for
// decoding, 8 for prompt processing). One dispatch can cover up to four matrices ("segments",
// e.g. Q, K and V, or the pieces of a matrix too large for one binding) whose rows are stacked
// in the output. Fusions, by flag:
//   F_NORM  x is RMS-normalised first (weights `nw`), the scale applied to the dot products
//   F_ACC   y += result (residual add)
//   F_BIAS  + bias[seg_bias[seg] + row]
//   F_GLU   segments 0 and 1 are gate and up: y = silu(gate · x) * (up · x)   (SwiGLU)
//   F_GELU  with F_GLU: gelu in place of silu (GeGLU, gemma3; common/act.glsl)
// WTYPE (ggml type id) is defined per variant; without it the type comes from seg_type.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ROWS = 2;
// 1: each invocation computes whole rows alone (no shared memory, no barriers). Much faster on
// CPU implementations (lavapipe runs invocations as SIMD lanes and pays for every barrier);
// GPUs use the cooperative path (0), where a workgroup shares the blocks of ROWS rows.
layout(constant_id = 2) const uint LANE_ROWS = 0;
layout(local_size_x_id = 0) in;
// Tokens per workgroup: the decode variants are built with `-D NT=1`; the mat-mat (`matmul_*`)
// takes NT as a specialization constant (`Kernels::matmul`: 8 on GPUs, where larger batches go
// to the tiled mat-mat, 16 on CPU implementations, 32 there for the weight types whose
// dequantization costs most (`kernels::lane_matmul_nt`); `PIGPU_VK_MATMUL_NT`), and with it FIXED:
// what the op fixes at pipeline creation for lane_rows_batch (F_GLU, F_NORM, X_WHOLE), or
// FIXED_PUSH (nothing: the flags come from the push constants). Lavapipe (gallivm, Mesa 22.3)
// runs both sides of every `if` under a lane mask, so only a constant spares a product without
// F_GLU the up rows' work, one without F_NORM the sums of squares, and whole vec4-aligned units
// the element-wise tail loads.
#define FIXED_PUSH 256u
// Every unit lies within k (k a multiple of 32) and x is vec4-aligned (x_off, x_stride).
#define X_WHOLE 128u
#ifdef NT
const uint FIXED = FIXED_PUSH;
#else
layout(constant_id = 3) const uint NT = 8;
layout(constant_id = 4) const uint FIXED = FIXED_PUSH;
#endif
#define MAX_SEG 4
// The `any` variant on the lane path: the type of each segment as a constant (LANE_T0..3), so
// each invocation runs the register forms (lane_rows_one, lane_rows_batch) for its rows' type,
// the dequantizer of that type only (`lane_rows_typed`). The host sets them where no
// invocation's ROWS rows mix types (a type run's rows a multiple of ROWS; with F_GLU gate and
// up of one type) and unused segments to segment 0's type; NO_TYPE (the default): lane_rows
// reads the types from the push constants. The tree path (GPUs without subgroup arithmetic,
// and the GPUs' mat-mat for batches of up to 8 tokens) takes them too, always set there
// (`dq_unit`: each segment's call of the dequantizer with its type a constant).
#define NO_TYPE 0xFFFFFFFFu
#ifndef WTYPE
layout(constant_id = 5) const uint LANE_T0 = NO_TYPE;
layout(constant_id = 6) const uint LANE_T1 = NO_TYPE;
layout(constant_id = 7) const uint LANE_T2 = NO_TYPE;
layout(constant_id = 8) const uint LANE_T3 = NO_TYPE;
#endif

layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) readonly buffer Wt { uint d[]; } W[MAX_SEG];
layout(set = 0, binding = 2) readonly buffer NormW { float nw[]; };
// The same activations and norm weights as vec4s: on lavapipe each load instruction is a loop
// over the SIMD lanes whatever its width, so the lane path reads four floats per load.
layout(set = 0, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(set = 0, binding = 2) readonly buffer NormW4 { vec4 nw4[]; };
layout(set = 0, binding = 3) readonly buffer Bias { float bias[]; };
layout(set = 0, binding = 4) buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint k;          // input width
    uint n_tok;      // tokens (columns of x)
    uint x_stride;   // floats between tokens in x
    uint y_stride;   // floats between tokens in y
    uint flags;
    float eps;       // RMSNorm epsilon
    uint y_off;      // first output row written
    uint nseg;
    uint x_off;      // first float of x read (e.g. the last token's row)
    uint pad0, pad1, pad2;  // uvec4 members are 16-byte aligned
    uvec4 seg_rows;
    uvec4 seg_type;
    uvec4 seg_bias;
} pc;

#define F_NORM 1u
#define F_ACC 2u
#define F_BIAS 4u
#define F_GLU 8u
#include "common/act.glsl"

// Whether fusion `f` (F_GLU, F_NORM) is on: a constant where FIXED says.
bool fixed_flag(uint f) {
    return FIXED == FIXED_PUSH ? (pc.flags & f) != 0u : (FIXED & f) != 0u;
}

#ifdef TEXEL
// The same weights as uniform texel buffers (R32_UINT views, binding 5): lavapipe fetches texels
// with a vector gather, where it turns every storage-buffer load into a loop over the SIMD lanes
// (docs/vulkan.md, "Reading weights through texel buffers"). Texel-buffer arrays may only be
// indexed by constants there (shaderUniformTexelBufferArrayDynamicIndexing), so the segment is
// picked by comparisons; SEGS (the dispatch's segment count, a specialization constant) lets
// the compiler drop the comparisons with segments the dispatch does not have.
layout(constant_id = 3) const uint SEGS = MAX_SEG;
layout(set = 0, binding = 5) uniform usamplerBuffer WT[MAX_SEG];
uint wload(uint s, uint i) {
    uint v = texelFetch(WT[0], int(i)).x;
    if (SEGS > 1u && s == 1u) {
        v = texelFetch(WT[1], int(i)).x;
    }
    if (SEGS > 2u && s == 2u) {
        v = texelFetch(WT[2], int(i)).x;
    }
    if (SEGS > 3u && s == 3u) {
        v = texelFetch(WT[3], int(i)).x;
    }
    return v;
}
#define WLOAD(s, i) wload(s, i)
// x and the norm weights as texel buffers too (binding 6, 7): every invocation of the lane path
// reads the same activations, each vec4 of them a loop over the lanes as a storage load.
layout(set = 0, binding = 6) uniform usamplerBuffer XT;
layout(set = 0, binding = 7) uniform usamplerBuffer NWT;
float x_at(uint i) { return uintBitsToFloat(texelFetch(XT, int(i)).x); }
float nw_at(uint i) { return uintBitsToFloat(texelFetch(NWT, int(i)).x); }
vec4 x4_at(uint i4) {
    uint i = 4u * i4;
    return vec4(x_at(i), x_at(i + 1u), x_at(i + 2u), x_at(i + 3u));
}
vec4 nw4_at(uint i4) {
    uint i = 4u * i4;
    return vec4(nw_at(i), nw_at(i + 1u), nw_at(i + 2u), nw_at(i + 3u));
}
#else
#define WLOAD(s, i) W[s].d[i]
float x_at(uint i) { return x[i]; }
float nw_at(uint i) { return nw[i]; }
vec4 x4_at(uint i4) { return x4[i4]; }
vec4 nw4_at(uint i4) { return nw4[i4]; }
#endif
#include "common/dequant.glsl"
#include "common/per_segment.glsl"

// The tree path's reduction; the lane path (LANE_ROWS) uses no shared memory, so its array is
// one float there, and its tokens per workgroup are not bounded by the device's shared memory.
shared float red[LANE_ROWS != 0u ? 1u : ROWS * 2u * NT * WG];
#include "common/reduce.glsl"

uint seg_type_of(uint seg) {
#ifdef WTYPE
    return WTYPE;
#else
    return pc.seg_type[seg];
#endif
}

// The tree path's unit u of segment seg's row at byte rb (of type ty) into wv: in the `any`
// variant with LANE_T0..3 set, one call per segment, each with its type a constant.
void dq_unit(uint seg, uint ty, uint rb, uint u, out float wv[32]) {
#ifndef WTYPE
    if (LANE_T0 != NO_TYPE) {
#define DQ_STEP(i, T) dq32(i, T, rb, u, pc.k, wv)
        PER_SEGMENT(seg, LANE_T0, LANE_T1, LANE_T2, LANE_T3, DQ_STEP)
#undef DQ_STEP
        return;
    }
#endif
    dq32(seg, ty, rb, u, pc.k, wv);
}

// Bias of output row `row` (stacked segments), 0 when none.
float bias_of(uint row) {
    if ((pc.flags & F_BIAS) == 0u) {
        return 0.0;
    }
    uint seg = 0u, srow = row;
    while (srow >= pc.seg_rows[seg]) {
        srow -= pc.seg_rows[seg];
        seg++;
    }
    return pc.seg_bias[seg] != 0xFFFFFFFFu ? bias[pc.seg_bias[seg] + srow] : 0.0;
}

void store(uint row, uint t, float v) {
    const uint yi = (gl_WorkGroupID.y * NT + t) * pc.y_stride + pc.y_off + row;
    if ((pc.flags & F_ACC) != 0u) {
        y[yi] += v;
    } else {
        y[yi] = v;
    }
}

// The LANE_ROWS path: this invocation computes ROWS consecutive output rows from `row0` for
// its tokens. Each unit of 32 activations is read once for all ROWS rows: on lavapipe every
// storage-buffer load costs a loop over the SIMD lanes, and the activations (one load per
// weight) dominated. Only the `any` variants (a type per segment) run it since lane_rows_one
// and lane_rows_batch, and only where an invocation's rows mix types (LANE_T0 == NO_TYPE): on
// lavapipe its acc, indexed by the loop `h` (not unrolled), lives in scratch memory.
void lane_rows(uint row0, uint total, uint units, uint t0, uint nt) {
    if (row0 >= total) {
        return;
    }
    const bool glu = (pc.flags & F_GLU) != 0u;
    const bool norm = (pc.flags & F_NORM) != 0u;
    // Sums of squares for the fused RMSNorm, from the same loads as the dot products.
    float ss[NT];
    for (uint t = 0u; t < NT; t++) {
        ss[t] = 0.0;
    }
    float acc[ROWS * 2u * NT];
    for (uint a = 0u; a < ROWS * 2u * NT; a++) {
        acc[a] = 0.0;
    }
    uint segs[ROWS], rbs[ROWS];
    const bool x_vec4 = ((pc.x_off | pc.x_stride) & 3u) == 0u;
    for (uint h = 0u; h < 2u; h++) {
        if (h == 1u && !glu) {
            break;
        }
        for (uint r = 0u; r < ROWS; r++) {
            uint seg = h, srow = min(row0 + r, total - 1u);
            if (!glu) {
                seg = 0u;
                while (srow >= pc.seg_rows[seg]) {
                    srow -= pc.seg_rows[seg];
                    seg++;
                }
            }
            segs[r] = seg;
            rbs[r] = srow * row_bytes(seg_type_of(seg), pc.k);
        }
        for (uint u = 0u; u < units; u++) {
            float wv[ROWS * 32u];
            for (uint r = 0u; r < ROWS; r++) {
                float w1[32];
                dq32(segs[r], seg_type_of(segs[r]), rbs[r], u, pc.k, w1);
                for (uint i = 0u; i < 32u; i++) {
                    wv[r * 32u + i] = w1[i];
                }
            }
            const uint e0 = u * 32u;
            const bool full = e0 + 32u <= pc.k;
            for (uint t = 0u; t < NT; t++) {
                if (t < nt) {
                    const uint xb = pc.x_off + (t0 + t) * pc.x_stride + e0;
                    if (full && x_vec4) {
                        for (uint i4 = 0u; i4 < 8u; i4++) {
                            vec4 xv = x4_at((xb >> 2) + i4);
                            if (norm) {
                                if (h == 0u) {
                                    ss[t] += dot(xv, xv);
                                }
                                xv *= nw4_at((e0 >> 2) + i4);
                            }
                            for (uint c = 0u; c < 4u; c++) {
                                for (uint r = 0u; r < ROWS; r++) {
                                    acc[(r * 2u + h) * NT + t] += wv[r * 32u + i4 * 4u + c] * xv[c];
                                }
                            }
                        }
                        continue;
                    }
                    for (uint i = 0u; i < 32u; i++) {
                        float xi = 0.0;
                        if (full || e0 + i < pc.k) {
                            xi = x_at(xb + i);
                            if (norm) {
                                if (h == 0u) {
                                    ss[t] += xi * xi;
                                }
                                xi *= nw_at(e0 + i);
                            }
                        }
                        for (uint r = 0u; r < ROWS; r++) {
                            acc[(r * 2u + h) * NT + t] += wv[r * 32u + i] * xi;
                        }
                    }
                }
            }
        }
    }
    float scale[NT];
    for (uint t = 0u; t < NT; t++) {
        scale[t] = norm ? inversesqrt(ss[t] / float(pc.k) + pc.eps) : 1.0;
    }
    for (uint r = 0u; r < ROWS; r++) {
        const uint row = row0 + r;
        for (uint t = 0u; t < NT; t++) {
            if (t < nt && row < total) {
                float v = acc[(r * 2u) * NT + t] * scale[t];
                if (glu) {
                    float up = acc[(r * 2u + 1u) * NT + t] * scale[t];
                    v = glu_act(v, (pc.flags & F_GELU) != 0u) * up;
                } else {
                    v += bias_of(row);
                }
                store(row, t, v);
            }
        }
    }
}

// The LANE_ROWS path for NT > 1 tokens (the prompt's mat-mat on CPU implementations): the same
// rows as lane_rows, shaped for how lavapipe compiles it. Every private array is indexed by
// constants only inside the token loop, so it lives in registers: a unit's dequantized weights
// (gate and, with F_GLU, up rows together, the norm weights folded in once per unit), and each
// token's partial sums. Only acc and ss are indexed by the token, once per (unit, token, row):
// arrays indexed at run time live in per-lane scratch memory, where every access is a gather or
// scatter, and in lane_rows' form that was every multiply-add. The x loads of a token serve the
// gate and up rows alike. ([[unroll]]: the loops with constant trip counts unroll whatever
// their size; the token loop does not.) `ty` is a constant at every call (WTYPE, or one of the
// `any` variant's LANE_T*: lane_rows_typed), so only that type's dequantizer is compiled in.
// x[4*i4 .. 4*i4+4) of the unit at element `e0` of the token row starting at float `xb`,
// zeros past k; `fast`: the whole unit lies within k and x is vec4-aligned.
vec4 x4_of(uint xb, uint e0, uint i4, bool fast) {
    if (fast) {
        return x4_at(((xb + e0) >> 2) + i4);
    }
    vec4 xv = vec4(0.0);
    [[unroll]] for (uint c = 0u; c < 4u; c++) {
        const uint i = e0 + i4 * 4u + c;
        if (i < pc.k) {
            xv[c] = x_at(xb + i);
        }
    }
    return xv;
}

void lane_rows_batch(uint ty, uint row0, uint total, uint units, uint t0, uint nt) {
    if (row0 >= total) {
        return;
    }
    const bool glu = fixed_flag(F_GLU);
    const bool norm = fixed_flag(F_NORM);
    const bool whole = FIXED != FIXED_PUSH && (FIXED & X_WHOLE) != 0u;
    float ss[NT];
    float acc[ROWS * 2u * NT];
    // ss and acc live in scratch memory (indexed by the token). Zeroed in loops that are not
    // unrolled, lavapipe (Mesa 22.3) compiles the kernel in 0.3-0.7 CPU-s, where the 16 + 256
    // stores unrolled cost it 2-3 CPU-s more; but the product with F_NORM only (QKV) then ran
    // 11 % slower warm, so that one pipeline keeps the unrolled stores (docs/vulkan.md,
    // "Pipelines: built together, and what the caches keep").
    if (FIXED != FIXED_PUSH && (FIXED & (F_GLU | F_NORM)) == F_NORM) {
        for (uint t = 0u; t < NT; t++) {
            ss[t] = 0.0;
            for (uint r = 0u; r < ROWS * 2u; r++) {
                acc[r * NT + t] = 0.0;
            }
        }
    } else {
        [[dont_unroll]] for (uint t = 0u; t < NT; t++) {
            ss[t] = 0.0;
            [[dont_unroll]] for (uint r = 0u; r < ROWS * 2u; r++) {
                acc[r * NT + t] = 0.0;
            }
        }
    }
    uint segs[ROWS * 2u], rbs[ROWS * 2u];
    for (uint h = 0u; h < 2u; h++) {
        for (uint r = 0u; r < ROWS; r++) {
            uint seg = h, srow = min(row0 + r, total - 1u);
            if (!glu) {
                seg = 0u;
                while (srow >= pc.seg_rows[seg]) {
                    srow -= pc.seg_rows[seg];
                    seg++;
                }
            }
            segs[h * ROWS + r] = seg;
            rbs[h * ROWS + r] = srow * row_bytes(ty, pc.k);
        }
    }
    const bool x_vec4 = ((pc.x_off | pc.x_stride) & 3u) == 0u;
    for (uint u = 0u; u < units; u++) {
        const uint e0 = u * 32u;
        const bool fast = whole || (e0 + 32u <= pc.k && x_vec4);
        float wg[ROWS * 32u], wu[ROWS * 32u];
        [[unroll]] for (uint r = 0u; r < ROWS; r++) {
            float w1[32];
            dq32(segs[r], ty, rbs[r], u, pc.k, w1);
            [[unroll]] for (uint i = 0u; i < 32u; i++) {
                wg[r * 32u + i] = w1[i];
            }
            if (glu) {
                dq32(segs[ROWS + r], ty, rbs[ROWS + r], u, pc.k, w1);
                [[unroll]] for (uint i = 0u; i < 32u; i++) {
                    wu[r * 32u + i] = w1[i];
                }
            }
        }
        if (norm) {
            [[unroll]] for (uint i4 = 0u; i4 < 8u; i4++) {
                vec4 nv = vec4(0.0);
                if (whole || e0 + 32u <= pc.k) {
                    nv = nw4_at((e0 >> 2) + i4);
                } else {
                    [[unroll]] for (uint c = 0u; c < 4u; c++) {
                        if (e0 + i4 * 4u + c < pc.k) {
                            nv[c] = nw_at(e0 + i4 * 4u + c);
                        }
                    }
                }
                [[unroll]] for (uint c = 0u; c < 4u; c++) {
                    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                        wg[r * 32u + i4 * 4u + c] *= nv[c];
                        if (glu) {
                            wu[r * 32u + i4 * 4u + c] *= nv[c];
                        }
                    }
                }
            }
        }
        for (uint t = 0u; t < nt; t++) {
            const uint xb = pc.x_off + (t0 + t) * pc.x_stride;
            float sg[ROWS], su[ROWS];
            float sq = 0.0;
            [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                sg[r] = 0.0;
                su[r] = 0.0;
            }
            [[unroll]] for (uint i4 = 0u; i4 < 8u; i4++) {
                const vec4 xv = x4_of(xb, e0, i4, fast);
                if (norm) {
                    sq += dot(xv, xv);
                }
                [[unroll]] for (uint c = 0u; c < 4u; c++) {
                    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                        sg[r] += wg[r * 32u + i4 * 4u + c] * xv[c];
                    }
                }
                if (glu) {
                    [[unroll]] for (uint c = 0u; c < 4u; c++) {
                        [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                            su[r] += wu[r * 32u + i4 * 4u + c] * xv[c];
                        }
                    }
                }
            }
            if (norm) {
                ss[t] += sq;
            }
            [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                acc[r * NT + t] += sg[r];
                if (glu) {
                    acc[(ROWS + r) * NT + t] += su[r];
                }
            }
        }
    }
    for (uint r = 0u; r < ROWS; r++) {
        const uint row = row0 + r;
        for (uint t = 0u; t < nt; t++) {
            if (row < total) {
                const float scale = norm ? inversesqrt(ss[t] / float(pc.k) + pc.eps) : 1.0;
                float v = acc[r * NT + t] * scale;
                if (glu) {
                    float up = acc[(ROWS + r) * NT + t] * scale;
                    v = glu_act(v, (pc.flags & F_GELU) != 0u) * up;
                } else {
                    v += bias_of(row);
                }
                store(row, t, v);
            }
        }
    }
}

// The LANE_ROWS path for one token (decoding), for weights of type `ty` (a constant, as in
// lane_rows_batch): the same
// rows as lane_rows, shaped for how lavapipe (gallivm) compiles it. Every private array is
// indexed by constants only ([[unroll]] loops), so it lives in registers; lane_rows indexed its
// accumulators by the gate/up half of a loop that does not unroll, which keeps them in per-lane
// scratch memory, where each access is a gather or a scatter. gallivm also runs both sides of
// every branch, so the edges past k are selects rather than a second, guarded copy of the
// product, and the up rows are a second trip of a loop that a product without F_GLU leaves
// after one. Per unit: the 32 activations are read (and normalised) once for all ROWS rows,
// then each row is dequantized and dotted with them.
// x[xb + i] for the 4 elements i = e0 + 4*i4 .. of the row, 0 at or past k.
vec4 x4_one(uint xb, uint e0, uint i4, bool fast) {
#ifdef TEXEL
    vec4 v;
    [[unroll]] for (uint c = 0u; c < 4u; c++) {
        const uint i = e0 + i4 * 4u + c;
        const float xi = x_at(xb + min(i, pc.k - 1u));
        v[c] = i < pc.k ? xi : 0.0;
    }
    return v;
#else
    return x4_of(xb, e0, i4, fast);
#endif
}

// The norm weights nw[e0 + 4*i4 ..], 0 at or past k.
vec4 nw4_one(uint e0, uint i4) {
#ifdef TEXEL
    vec4 v;
    [[unroll]] for (uint c = 0u; c < 4u; c++) {
        const uint i = e0 + i4 * 4u + c;
        const float wi = nw_at(min(i, pc.k - 1u));
        v[c] = i < pc.k ? wi : 0.0;
    }
    return v;
#else
    if (e0 + 32u <= pc.k) {
        return nw4_at((e0 >> 2) + i4);
    }
    vec4 v = vec4(0.0);
    [[unroll]] for (uint c = 0u; c < 4u; c++) {
        const uint i = e0 + i4 * 4u + c;
        if (i < pc.k) {
            v[c] = nw_at(i);
        }
    }
    return v;
#endif
}

// The dot product of unit `u` of a Q8_0 row at byte `rb` of segment `s` with the unit's
// activations `xs`, for lane_rows_one: the 34-byte block is the 9 words that hold it, each
// loaded once (its scale shares the first: the low half where the block is word-aligned, else
// the high half, the quants then aligned from the second word), the quants are dotted as
// integers converted to float, and the scale multiplies the unit's sum once, not each weight.
// The words are the ones dq32 loads (its LD_RUN reads the ninth only for an aligned block).
float q8_0_dot(uint s, uint rb, uint u, vec4 xs[8]) {
    const uint b = rb + u * 34u;
    const uint w0 = b >> 2;
    const bool aligned = (b & 2u) == 0u;
    uint wv[9];
    [[unroll]] for (uint j = 0u; j < 9u; j++) {
        wv[j] = WLOAD(s, w0 + j);
    }
    const float d = unpackHalf2x16(aligned ? wv[0] : wv[0] >> 16).x;
    vec4 s4 = vec4(0.0);
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        const int q = int(aligned ? (wv[j] >> 16) | (wv[j + 1u] << 16) : wv[j + 1u]);
        const vec4 qv = vec4(bitfieldExtract(q, 0, 8), bitfieldExtract(q, 8, 8),
                             bitfieldExtract(q, 16, 8), bitfieldExtract(q, 24, 8));
        s4 += qv * xs[j];
    }
    return d * ((s4.x + s4.y) + (s4.z + s4.w));
}

void lane_rows_one(uint ty, uint row0, uint total, uint units, uint t0) {
    if (row0 >= total) {
        return;
    }
    const bool glu = (pc.flags & F_GLU) != 0u;
    const bool norm = (pc.flags & F_NORM) != 0u;
    const uint xb = pc.x_off + t0 * pc.x_stride;
    const bool x_vec4 = (xb & 3u) == 0u;
    float ag[ROWS], au[ROWS];
    float ss = 0.0;
    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
        ag[r] = 0.0;
        au[r] = 0.0;
    }
    for (uint h = 0u; h < (glu ? 2u : 1u); h++) {
        uint segs[ROWS], rbs[ROWS];
        [[unroll]] for (uint r = 0u; r < ROWS; r++) {
            uint seg = h, srow = min(row0 + r, total - 1u);
            if (!glu) {
                seg = 0u;
                while (srow >= pc.seg_rows[seg]) {
                    srow -= pc.seg_rows[seg];
                    seg++;
                }
            }
            segs[r] = seg;
            rbs[r] = srow * row_bytes(ty, pc.k);
        }
        float a[ROWS];
        [[unroll]] for (uint r = 0u; r < ROWS; r++) {
            a[r] = 0.0;
        }
        float sq = 0.0;
        for (uint u = 0u; u < units; u++) {
            const uint e0 = u * 32u;
            const bool fast = e0 + 32u <= pc.k && x_vec4;
            vec4 xs[8];
            [[unroll]] for (uint i4 = 0u; i4 < 8u; i4++) {
                vec4 xv = x4_one(xb, e0, i4, fast);
                sq += dot(xv, xv);
                if (norm) {
                    xv *= nw4_one(e0, i4);
                }
                xs[i4] = xv;
            }
            [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                if (ty == T_Q8_0) {
                    a[r] += q8_0_dot(segs[r], rbs[r], u, xs);
                    continue;
                }
                float w[32];
                dq32(segs[r], ty, rbs[r], u, pc.k, w);
                vec4 s4 = vec4(0.0);
                [[unroll]] for (uint i4 = 0u; i4 < 8u; i4++) {
                    s4 += vec4(w[4u * i4], w[4u * i4 + 1u], w[4u * i4 + 2u], w[4u * i4 + 3u]) * xs[i4];
                }
                a[r] += (s4.x + s4.y) + (s4.z + s4.w);
            }
        }
        [[unroll]] for (uint r = 0u; r < ROWS; r++) {
            ag[r] = h == 0u ? a[r] : ag[r];
            au[r] = h == 0u ? au[r] : a[r];
        }
        ss = h == 0u ? sq : ss;
    }
    const float scale = norm ? inversesqrt(ss / float(pc.k) + pc.eps) : 1.0;
    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
        const uint row = row0 + r;
        if (row < total) {
            float v = ag[r] * scale;
            if (glu) {
                v = glu_act(v, (pc.flags & F_GELU) != 0u) * (au[r] * scale);
            } else {
                v += bias_of(row);
            }
            store(row, 0u, v);
        }
    }
}

// The register forms for weights of type `ty` (a constant at every call, so only its
// dequantizer is compiled in): the mat-mat's for NT > 1 tokens, the mat-vec's for one.
void lane_rows_of(uint ty, uint row0, uint total, uint units, uint t0, uint nt) {
    if (NT > 1) {
        lane_rows_batch(ty, row0, total, units, t0, nt);
    } else {
        lane_rows_one(ty, row0, total, units, t0);
    }
}

#ifndef WTYPE
// The `any` variant's register form: the type of this invocation's rows (its first row's
// segment: the host set LANE_T* only where an invocation's rows share one type), then the
// typed form for it, one call per distinct type of the op. Lavapipe runs a SIMD vector of
// invocations together and skips a call whose condition is false for all of them, so a vector
// whose rows have one type runs one dequantizer, one that straddles a type change both.
void lane_rows_typed(uint row0, uint total, uint units, uint t0, uint nt) {
    if (row0 >= total) {
        return;
    }
    uint seg = 0u, srow = row0;
    if ((pc.flags & F_GLU) == 0u) {
        while (srow >= pc.seg_rows[seg]) {
            srow -= pc.seg_rows[seg];
            seg++;
        }
    }
    const uint ty = seg == 0u ? LANE_T0 : seg == 1u ? LANE_T1 : seg == 2u ? LANE_T2 : LANE_T3;
    if (ty == LANE_T0) {
        lane_rows_of(LANE_T0, row0, total, units, t0, nt);
    }
    if (LANE_T1 != LANE_T0 && ty == LANE_T1) {
        lane_rows_of(LANE_T1, row0, total, units, t0, nt);
    }
    if (LANE_T2 != LANE_T0 && LANE_T2 != LANE_T1 && ty == LANE_T2) {
        lane_rows_of(LANE_T2, row0, total, units, t0, nt);
    }
    if (LANE_T3 != LANE_T0 && LANE_T3 != LANE_T1 && LANE_T3 != LANE_T2 && ty == LANE_T3) {
        lane_rows_of(LANE_T3, row0, total, units, t0, nt);
    }
}
#endif

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
    const uint t0 = gl_WorkGroupID.y * NT;
    const bool glu = (pc.flags & F_GLU) != 0u;
    const bool norm = (pc.flags & F_NORM) != 0u;
    uint total = 0u;
    for (uint s = 0u; s < pc.nseg; s++) {
        total += pc.seg_rows[s];
    }
    if (glu) {
        total = pc.seg_rows[0];
    }
    const uint units = (pc.k + 31u) / 32u;
    const uint nt = min(NT, pc.n_tok - t0);
    if (LANE_ROWS != 0u) {
        const uint row0 = (wg * WG + tid) * ROWS;
#ifdef WTYPE
        lane_rows_of(WTYPE, row0, total, units, t0, nt);
#else
        if (LANE_T0 != NO_TYPE) {
            lane_rows_typed(row0, total, units, t0, nt);
        } else {
            lane_rows(row0, total, units, t0, nt);
        }
#endif
        return;
    }

    // Fused RMSNorm: every workgroup computes the (cheap) scale of each of its tokens.
    float scale[NT];
    for (uint t = 0u; t < NT; t++) {
        scale[t] = 1.0;
    }
    if (norm) {
        for (uint t = 0u; t < NT; t++) {
            float ss = 0.0;
            if (t < nt) {
                uint xb = pc.x_off + (t0 + t) * pc.x_stride;
                for (uint i = tid; i < pc.k; i += WG) {
                    float xi = x[xb + i];
                    ss += xi * xi;
                }
            }
            red[t * WG + tid] = ss;
        }
        reduce_sum(tid, NT);
        for (uint t = 0u; t < NT; t++) {
            scale[t] = inversesqrt(red[t * WG] / float(pc.k) + pc.eps);
        }
        barrier();
    }

    float acc[ROWS * 2u * NT];
    for (uint a = 0u; a < ROWS * 2u * NT; a++) {
        acc[a] = 0.0;
    }
    for (uint r = 0u; r < ROWS; r++) {
        const uint row = wg * ROWS + r;
        if (row >= total) {
            break;
        }
        for (uint h = 0u; h < (glu ? 2u : 1u); h++) {
            uint seg = h, srow = row;
            if (!glu) {
                seg = 0u;
                while (srow >= pc.seg_rows[seg]) {
                    srow -= pc.seg_rows[seg];
                    seg++;
                }
            }
            const uint ty = seg_type_of(seg);
            const uint rb = srow * row_bytes(ty, pc.k);
            for (uint u = tid; u < units; u += WG) {
                float wv[32];
                dq_unit(seg, ty, rb, u, wv);
                const uint e0 = u * 32u;
                const uint ne = min(32u, pc.k - e0);
                if (norm) {
                    for (uint i = 0u; i < ne; i++) {
                        wv[i] *= nw[e0 + i];
                    }
                }
                for (uint t = 0u; t < nt; t++) {
                    const uint xb = pc.x_off + (t0 + t) * pc.x_stride + e0;
                    float sacc = 0.0;
                    if (ne == 32u) {
                        for (uint i = 0u; i < 32u; i++) {
                            sacc += wv[i] * x[xb + i];
                        }
                    } else {
                        for (uint i = 0u; i < ne; i++) {
                            sacc += wv[i] * x[xb + i];
                        }
                    }
                    acc[(r * 2u + h) * NT + t] += sacc;
                }
            }
        }
    }

    for (uint a = 0u; a < ROWS * 2u * NT; a++) {
        red[a * WG + tid] = acc[a];
    }
    reduce_sum(tid, ROWS * 2u * NT);

    // One invocation per (row, token) writes its result.
    if (tid < ROWS * NT) {
        const uint r = tid / NT, t = tid % NT;
        const uint row = wg * ROWS + r;
        if (row < total && t < nt) {
            float v = red[((r * 2u) * NT + t) * WG] * scale[t];
            if (glu) {
                float up = red[((r * 2u + 1u) * NT + t) * WG] * scale[t];
                v = glu_act(v, (pc.flags & F_GELU) != 0u) * up;
            } else if ((pc.flags & F_BIAS) != 0u) {
                uint seg = 0u, srow = row;
                while (srow >= pc.seg_rows[seg]) {
                    srow -= pc.seg_rows[seg];
                    seg++;
                }
                if (pc.seg_bias[seg] != 0xFFFFFFFFu) {
                    v += bias[pc.seg_bias[seg] + srow];
                }
            }
            const uint yi = (t0 + t) * pc.y_stride + pc.y_off + row;
            if ((pc.flags & F_ACC) != 0u) {
                y[yi] += v;
            } else {
                y[yi] = v;
            }
        }
    }
}
