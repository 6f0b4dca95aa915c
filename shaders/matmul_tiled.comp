#version 450
// Tiled matrix x matrix for prompt batches (more than 8 tokens): Y[t][r] = W[r] . X[t].
// A workgroup computes a BM x BN tile of the output (BM weight rows by BN tokens). For each step
// of BK along k it dequantizes the BM x BK weight tile once into shared memory (f32, so results
// match the CPU reference's f32 weights) and stages the BK x BN activation tile beside it; then
// every invocation accumulates its own TM x TN outputs (register blocking, f32) from those two
// tiles, so each weight is decoded once per tile and reused for BN tokens.
//
// Same bindings, push constants and fusions as matvec.comp (one descriptor set serves both):
//   F_NORM  RMSNorm of x: x * nw is staged, sums of squares come from the same loads and the
//           scale is applied at the end
//   F_ACC   y += result        F_BIAS  + bias        F_GLU  y = silu(gate . x) * (up . x)
// With F_GLU a tile's first BM/2 rows are gate rows and its last BM/2 the same rows of up, so
// each invocation holds matching gate/up outputs (TM is even) and applies SwiGLU itself.
//
// Tile shape (specialization constants; the host keeps them within the device's limits):
// WG invocations = (BM/TM) row groups x (BN/TN) token groups; invocation i owns rows
// lr + RG*a (a < TM) and tokens lc + CG*b (b < TN), strided so that neighbouring invocations
// read neighbouring shared-memory words. BK is a multiple of 32 (one dequantized unit); WG is a
// multiple of BN (WG/BN invocations stage each token's slice of x).
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint BM = 64;
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint BK = 32;
layout(constant_id = 4) const uint TM = 4;
layout(constant_id = 5) const uint TN = 8;
layout(local_size_x_id = 0) in;
#define MAX_SEG 4

layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) readonly buffer Wt { uint d[]; } W[MAX_SEG];
layout(set = 0, binding = 2) readonly buffer NormW { float nw[]; };
layout(set = 0, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(set = 0, binding = 2) readonly buffer NormW4 { vec4 nw4[]; };
layout(set = 0, binding = 3) readonly buffer Bias { float bias[]; };
layout(set = 0, binding = 4) buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint k;
    uint n_tok;
    uint x_stride;
    uint y_stride;
    uint flags;
    float eps;
    uint y_off;
    uint nseg;
    uint x_off;
    uint pad0, pad1, pad2;
    uvec4 seg_rows;
    uvec4 seg_type;
    uvec4 seg_bias;
} pc;

#define F_NORM 1u
#define F_ACC 2u
#define F_BIAS 4u
#define F_GLU 8u
#include "common/act.glsl"

#define WLOAD(s, i) W[s].d[i]
#include "common/dequant.glsl"
#include "common/seg_types.glsl"

const uint RG = BM / TM;     // row groups
const uint CG = BN / TN;     // token groups
const uint LPT = WG / BN;    // invocations staging one token's slice of x
const uint KPL = BK / LPT;   // elements of that slice per invocation

// No padding: writes and reads both go along rows/tokens in neighbouring invocations (no bank
// conflicts), and the large tile then fits 32 KiB (lavapipe) as well as 48 KiB (NVIDIA).
shared float As[BK * BM];    // [kk][row]; after the k loop: partial sums of squares
shared float Bs[BK * BN];    // [kk][token]

// Unit u of row srow of segment seg, dequantized into v, the segment's type a
// constant (one call per segment in the `any` variant: common/seg_types.glsl).
void dq_seg(uint seg, uint srow, uint u, out float v[32]) {
#ifdef WTYPE
    dq32(seg, WTYPE, srow * row_bytes(WTYPE, pc.k), u, pc.k, v);
#else
#define DQ_STEP(i, T) dq32(i, T, srow * row_bytes(T, pc.k), u, pc.k, v)
    PER_SEGMENT(seg, SEG_T0, SEG_T1, SEG_T2, SEG_T3, DQ_STEP)
#undef DQ_STEP
#endif
}

// Segment and row within it of stacked output row `row`.
void locate(uint row, out uint seg, out uint srow) {
    seg = 0u;
    srow = row;
    while (seg + 1u < pc.nseg && srow >= pc.seg_rows[seg]) {
        srow -= pc.seg_rows[seg];
        seg++;
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint tile_m = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
    const uint t0 = gl_WorkGroupID.y * BN;
    const bool glu = (pc.flags & F_GLU) != 0u;
    const bool norm = (pc.flags & F_NORM) != 0u;
    uint total = 0u;
    for (uint s = 0u; s < pc.nseg; s++) {
        total += pc.seg_rows[s];
    }
    if (glu) {
        total = pc.seg_rows[0];
    }
    // Output rows of this tile start at m0 (BM/2 of them with F_GLU).
    const uint m0 = tile_m * (glu ? BM / 2u : BM);
    if (m0 >= total) {
        return;
    }
    const uint units = (pc.k + 31u) / 32u;
    const uint lr = tid % RG, lc = tid / RG;

    float acc[TM * TN];
    for (uint a = 0u; a < TM * TN; a++) {
        acc[a] = 0.0;
    }
    // Staging of x: this invocation's token and slice (neighbours take neighbouring tokens).
    const uint sn = tid % BN, sk = (tid / BN) * KPL;
    const uint st = t0 + sn;
    const bool st_ok = st < pc.n_tok;
    const uint xb = pc.x_off + st * pc.x_stride;
    const bool x_vec4 = ((pc.x_off | pc.x_stride) & 3u) == 0u && (KPL & 3u) == 0u;
    float ss = 0.0;

    for (uint k0 = 0u; k0 < pc.k; k0 += BK) {
        // Weights: BM rows x BK/32 units, each unit decoded by one invocation.
        for (uint ui = tid; ui < BM * (BK / 32u); ui += WG) {
            const uint rl = ui % BM, sub = ui / BM;
            uint row, h = 0u;
            if (glu) {
                h = rl < BM / 2u ? 0u : 1u;
                row = m0 + rl - h * (BM / 2u);
            } else {
                row = m0 + rl;
            }
            const uint u = k0 / 32u + sub;
            float v[32];
            if (row < total && u < units) {
                uint seg = h, srow = row;
                if (!glu) {
                    locate(row, seg, srow);
                }
                dq_seg(seg, srow, u, v);
            } else {
                for (uint i = 0u; i < 32u; i++) {
                    v[i] = 0.0;
                }
            }
            for (uint i = 0u; i < 32u; i++) {
                As[(sub * 32u + i) * BM + rl] = v[i];
            }
        }
        // Activations: BN tokens x BK, zero past the end of k or of the batch.
        const uint kb = k0 + sk;
        if (x_vec4 && st_ok && kb + KPL <= pc.k) {
            for (uint i4 = 0u; i4 < KPL / 4u; i4++) {
                vec4 xv = x4[(xb + kb) / 4u + i4];
                if (norm) {
                    ss += dot(xv, xv);
                    xv *= nw4[kb / 4u + i4];
                }
                for (uint c = 0u; c < 4u; c++) {
                    Bs[(sk + 4u * i4 + c) * BN + sn] = xv[c];
                }
            }
        } else {
            for (uint i = 0u; i < KPL; i++) {
                float xi = 0.0;
                if (st_ok && kb + i < pc.k) {
                    xi = x[xb + kb + i];
                    if (norm) {
                        ss += xi * xi;
                        xi *= nw[kb + i];
                    }
                }
                Bs[(sk + i) * BN + sn] = xi;
            }
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float av[TM], bv[TN];
            for (uint a = 0u; a < TM; a++) {
                av[a] = As[kk * BM + lr + a * RG];
            }
            for (uint b = 0u; b < TN; b++) {
                bv[b] = Bs[kk * BN + lc + b * CG];
            }
            for (uint a = 0u; a < TM; a++) {
                for (uint b = 0u; b < TN; b++) {
                    acc[a * TN + b] = fma(av[a], bv[b], acc[a * TN + b]);
                }
            }
        }
        barrier();
    }

    // RMSNorm scale per token: the staging invocations' partial sums of squares.
    // (As is free: the loop ended with a barrier; BK * BM >= WG for every tile.)
    As[tid] = ss;
    barrier();
    float scale[TN];
    for (uint b = 0u; b < TN; b++) {
        scale[b] = 1.0;
        if (norm) {
            float s = 0.0;
            for (uint p = 0u; p < LPT; p++) {
                s += As[p * BN + lc + b * CG];
            }
            scale[b] = inversesqrt(s / float(pc.k) + pc.eps);
        }
    }

    const uint out_rows = glu ? TM / 2u : TM;
    for (uint a = 0u; a < out_rows; a++) {
        const uint row = m0 + lr + a * RG;
        if (row >= total) {
            continue;
        }
        float bv = 0.0;
        if (!glu && (pc.flags & F_BIAS) != 0u) {
            uint seg, srow;
            locate(row, seg, srow);
            if (pc.seg_bias[seg] != 0xFFFFFFFFu) {
                bv = bias[pc.seg_bias[seg] + srow];
            }
        }
        for (uint b = 0u; b < TN; b++) {
            const uint t = t0 + lc + b * CG;
            if (t >= pc.n_tok) {
                continue;
            }
            float v = acc[a * TN + b] * scale[b];
            if (glu) {
                const float up = acc[(a + TM / 2u) * TN + b] * scale[b];
                v = glu_act(v, (pc.flags & F_GELU) != 0u) * up;
            } else {
                v += bv;
            }
            const uint yi = t * pc.y_stride + pc.y_off + row;
            if ((pc.flags & F_ACC) != 0u) {
                y[yi] += v;
            } else {
                y[yi] = v;
            }
        }
    }
}
