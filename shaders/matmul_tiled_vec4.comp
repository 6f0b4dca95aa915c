#version 450
// Tiled matrix x matrix for prompt batches, the form for GPUs' shared-memory and load issue
// (`PIGPU_VK_TILED=vec4|vec4pf`; matmul_tiled.comp is the first form, `scalar`). Same tile
// shapes, bindings, push constants and fusions as matmul_tiled.comp: Y[t][r] = W[r] . X[t], a
// workgroup computes BM weight rows x BN tokens, the BM x BK weight tile is dequantized once per
// step into shared memory (f32) beside the BK x BN activation tile, and each invocation
// accumulates TM x TN outputs in f32 registers. What differs:
// - Staging the weights: 4 invocations share each 32-weight unit, a quarter (8 weights) each
//   (`dq8`), so every invocation decodes (2 quarters per step on each tile shape), and the 4
//   invocations of a unit read neighbouring bytes of one row (a warp's load spans 8 rows, not 32).
// - The k loop reads shared memory as vec4: an invocation owns groups of 4 neighbouring rows
//   (g = lr + RG*a4) and of 4 neighbouring tokens (lc + CG*b4): TM/4 + TN/4 loads per TM x TN
//   FMAs (the first form: TM + TN).
// - As's 4-row groups are swizzled by k (group g of step row kk sits at g ^ 2*((kk >> 3) & 3)),
//   so the 4 quarters of one row, written at once, land in different banks; a read at one kk is
//   a permutation of the groups (no conflicts either way, no padding: the l tile fits 32 KiB).
// - With F_GLU each group holds (gate r, gate r+1, up r, up r+1): every invocation owns matching
//   pairs whatever TM.
// - PF (spec constant 6): the next step's weights and activations are loaded and decoded into
//   registers before this step's products and stored after them (one shared buffer, two
//   barriers per step as before); without PF a step loads, stores, then computes.
// Needs TM, TN multiples of 4, BM a multiple of 32, 4*BM*(BK/32) a multiple of WG; the rest as
// matmul_tiled.comp (`Tile::fits_for` keeps the host within these and the device's limits).
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint BM = 64;
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint BK = 32;
layout(constant_id = 4) const uint TM = 4;
layout(constant_id = 5) const uint TN = 8;
layout(constant_id = 6) const bool PF = false;
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

const uint RG = BM / TM;                  // invocations along the rows
const uint CG = BN / TN;                  // invocations along the tokens
const uint GM = BM / 4u;                  // 4-row groups per step row of As
const uint GN = BN / 4u;                  // 4-token groups per step row of Bs
const uint QPI = 4u * BM * (BK / 32u) / WG; // weight quarters each invocation decodes per step
const uint LPT = WG / BN;                 // invocations staging one token's slice of x
const uint KPL = BK / LPT;                // elements of that slice per invocation

shared vec4 As[BK * GM];   // [kk][group ^ swizzle(kk)]; after the k loop: sums of squares
shared vec4 Bs[BK * GN];   // [kk][token group]

// This invocation's staged step, between its loads and its stores to shared memory.
float wq[QPI][8];
float xs[KPL];
float ss = 0.0;

// Per workgroup / invocation, set once at the start of main.
bool glu, norm;
uint m0, total, units, sn, sk, xb;
bool st_ok, x_vec4;

// Quarter qt of unit u of row srow of segment seg, dequantized into v, the segment's type a
// constant (one call per segment in the `any` variant: common/seg_types.glsl).
void dq_seg(uint seg, uint srow, uint u, uint qt, out float v[8]) {
#ifdef WTYPE
    dq8(seg, WTYPE, srow * row_bytes(WTYPE, pc.k), u, qt, pc.k, v);
#else
#define DQ_STEP(i, T) dq8(i, T, srow * row_bytes(T, pc.k), u, qt, pc.k, v)
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

uint swizzle(uint kk) { return 2u * ((kk >> 3) & 3u); }

// Column p of the tile (0..BM): its matrix (gate 0 / up 1 with F_GLU) and output row.
void column(uint p, out uint h, out uint row) {
    if (glu) {
        h = (p >> 1) & 1u;
        row = m0 + (p >> 2) * 2u + (p & 1u);
    } else {
        h = 0u;
        row = m0 + p;
    }
}

// Loads and decodes step k0 into wq and xs (sums of squares into ss).
void stage(uint k0) {
    for (uint i = 0u; i < QPI; i++) {
        const uint ui = gl_LocalInvocationID.x + WG * i;
        const uint qt = ui & 3u, p = (ui >> 2) % BM, sub = (ui >> 2) / BM;
        uint h, row;
        column(p, h, row);
        const uint u = k0 / 32u + sub;
        if (row < total && u < units) {
            uint seg = h, srow = row;
            if (!glu) {
                locate(row, seg, srow);
            }
            dq_seg(seg, srow, u, qt, wq[i]);
        } else {
            for (uint e = 0u; e < 8u; e++) {
                wq[i][e] = 0.0;
            }
        }
    }
    // Activations: zero past the end of k or of the batch.
    const uint kb = k0 + sk;
    if (x_vec4 && st_ok && kb + KPL <= pc.k) {
        for (uint i4 = 0u; i4 < KPL / 4u; i4++) {
            vec4 xv = x4[(xb + kb) / 4u + i4];
            if (norm) {
                ss += dot(xv, xv);
                xv *= nw4[kb / 4u + i4];
            }
            for (uint c = 0u; c < 4u; c++) {
                xs[4u * i4 + c] = xv[c];
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
            xs[i] = xi;
        }
    }
}

// Writes the staged step to shared memory.
void store() {
    for (uint i = 0u; i < QPI; i++) {
        const uint ui = gl_LocalInvocationID.x + WG * i;
        const uint qt = ui & 3u, p = (ui >> 2) % BM, sub = (ui >> 2) / BM;
        for (uint e = 0u; e < 8u; e++) {
            const uint kk = sub * 32u + 8u * qt + e;
            As[kk * GM + ((p >> 2) ^ swizzle(kk))][p & 3u] = wq[i][e];
        }
    }
    for (uint i = 0u; i < KPL; i++) {
        Bs[(sk + i) * GN + (sn >> 2)][sn & 3u] = xs[i];
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint tile_m = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
    const uint t0 = gl_WorkGroupID.y * BN;
    glu = (pc.flags & F_GLU) != 0u;
    norm = (pc.flags & F_NORM) != 0u;
    total = 0u;
    for (uint s = 0u; s < pc.nseg; s++) {
        total += pc.seg_rows[s];
    }
    if (glu) {
        total = pc.seg_rows[0];
    }
    // Output rows of this tile start at m0 (BM/2 of them with F_GLU).
    m0 = tile_m * (glu ? BM / 2u : BM);
    if (m0 >= total) {
        return;
    }
    units = (pc.k + 31u) / 32u;
    const uint lr = tid % RG, lc = tid / RG;

    vec4 acc[TM * (TN / 4u)];   // [row a][token group b4]
    for (uint a = 0u; a < TM * (TN / 4u); a++) {
        acc[a] = vec4(0.0);
    }
    // Staging of x: this invocation's token and slice (neighbours take neighbouring tokens).
    sn = tid % BN;
    sk = (tid / BN) * KPL;
    st_ok = t0 + sn < pc.n_tok;
    xb = pc.x_off + (t0 + sn) * pc.x_stride;
    x_vec4 = ((pc.x_off | pc.x_stride) & 3u) == 0u && (KPL & 3u) == 0u;

    if (PF) {
        stage(0u);
    }
    for (uint k0 = 0u; k0 < pc.k; k0 += BK) {
        if (!PF) {
            stage(k0);
        }
        store();
        barrier();
        if (PF && k0 + BK < pc.k) {
            stage(k0 + BK);
        }
        for (uint kk = 0u; kk < BK; kk++) {
            vec4 av[TM / 4u], bv[TN / 4u];
            const uint sw = swizzle(kk);
            for (uint a4 = 0u; a4 < TM / 4u; a4++) {
                av[a4] = As[kk * GM + ((lr + RG * a4) ^ sw)];
            }
            for (uint b4 = 0u; b4 < TN / 4u; b4++) {
                bv[b4] = Bs[kk * GN + lc + CG * b4];
            }
            for (uint a4 = 0u; a4 < TM / 4u; a4++) {
                for (uint c = 0u; c < 4u; c++) {
                    for (uint b4 = 0u; b4 < TN / 4u; b4++) {
                        const uint ai = (4u * a4 + c) * (TN / 4u) + b4;
                        acc[ai] = fma(vec4(av[a4][c]), bv[b4], acc[ai]);
                    }
                }
            }
        }
        barrier();
    }

    // RMSNorm scale per token: the staging invocations' partial sums of squares.
    // (As is free: the loop ended with a barrier; BK * BM >= WG for every tile.)
    As[tid >> 2][tid & 3u] = ss;
    barrier();
    float scale[TN];
    for (uint b = 0u; b < TN; b++) {
        scale[b] = 1.0;
        if (norm) {
            const uint tl = 4u * (lc + CG * (b >> 2)) + (b & 3u);
            float s = 0.0;
            for (uint p = 0u; p < LPT; p++) {
                const uint i = p * BN + tl;
                s += As[i >> 2][i & 3u];
            }
            scale[b] = inversesqrt(s / float(pc.k) + pc.eps);
        }
    }

    for (uint a4 = 0u; a4 < TM / 4u; a4++) {
        for (uint c = 0u; c < 4u; c++) {
            // With F_GLU, c = 0, 1 are gate rows and c + 2 the same rows of up.
            if (glu && c >= 2u) {
                continue;
            }
            uint h, row;
            column(4u * (lr + RG * a4) + c, h, row);
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
            const uint a = 4u * a4 + c;
            for (uint b = 0u; b < TN; b++) {
                const uint t = t0 + 4u * (lc + CG * (b >> 2)) + (b & 3u);
                if (t >= pc.n_tok) {
                    continue;
                }
                float v = acc[a * (TN / 4u) + (b >> 2)][b & 3u] * scale[b];
                if (glu) {
                    const float up = acc[(a + 2u) * (TN / 4u) + (b >> 2)][b & 3u] * scale[b];
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
}
