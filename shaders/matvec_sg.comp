#version 450
// Decode mat-vec for GPUs (one token: y = W · x): the same bindings, push constants and fusions
// as matvec.comp (F_NORM, F_ACC, F_BIAS, F_GLU, up to four stacked segments), shaped for wide
// SIMT hardware instead of lavapipe:
//   - a workgroup of WG lanes computes ROWS rows; the lanes of a row split it into "chunks" of
//     contiguous weight bytes so neighbouring lanes read neighbouring bytes: 16 lanes per
//     256-weight K-quant super-block (16 weights each), 4 lanes per 32-weight block (8 weights
//     each), 4 weights per lane for F16/F32; Q2_K/Q3_K fall back to 32-weight units;
//   - activations (and RMSNorm weights) are read as vec4s matching each chunk's weights;
//   - Q4_K/Q5_K factor the min term out: d·Σ(sc·q·x) − dmin·Σ(m·x);
//   - reductions are subgroupAdd, one shared slot per subgroup and one barrier;
//   - the RMSNorm sum of squares comes from the activation loads of the workgroup's first row
//     (its lanes read every element of x exactly once) and rides in the same reduction (its
//     scale is a common factor), so x is not read a second time for it.
// Needs subgroup arithmetic; any subgroup size works (the engine requires full subgroups where
// the device allows it). WTYPE (ggml type id) is defined per variant; without it (the `any`
// variant) each segment's type is a constant, SEG_T0..3 (the push constants' seg_type is not
// read). Grid: (ceil(rows / ROWS) split over x and z, 1 token per y).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint ROWS = 2;
layout(local_size_x_id = 0) in;
#define MAX_SEG 4

layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(set = 0, binding = 1) readonly buffer Wt { uint d[]; } W[MAX_SEG];
layout(set = 0, binding = 2) readonly buffer NormW { float nw[]; };
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

// Per subgroup: ROWS × 2 partial dot products (2: gate and up), then the sum of squares.
#define NV (ROWS * 2u + 1u)
shared float part[NV * WG];

// Where this token's activations start, whether they can be read as vec4s, whether RMSNorm
// weights multiply them.
uint g_xb;
bool g_x4;
bool g_norm;
// While g_ss_on (the first row's first pass, with the norm on), xv and xs add the squares of
// the raw activations they load to g_ss: this lane's share of the RMSNorm sum of squares.
bool g_ss_on;
float g_ss;

// x[e..e+4) (times the norm weights), e a multiple of 4 with e + 4 <= k.
vec4 xv(uint e) {
    vec4 v;
    if (g_x4) {
        v = x4[(g_xb + e) >> 2];
    } else {
        const uint i = g_xb + e;
        v = vec4(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
    }
    if (g_norm) {
        if (g_ss_on) {
            g_ss += dot(v, v);
        }
        v *= nw4[e >> 2];
    }
    return v;
}

// x[e] (times its norm weight), 0 past k.
float xs(uint e) {
    if (e >= pc.k) {
        return 0.0;
    }
    const float v = x[g_xb + e];
    if (g_norm && g_ss_on) {
        g_ss += v * v;
    }
    return g_norm ? v * nw[e] : v;
}

float hsum(vec4 v) { return dot(v, vec4(1.0)); }

// The four bytes of `q` (shifted right by `sh`), masked by `m`, as floats.
vec4 bytes4(uint q, uint sh, uint m) {
    return vec4(float((q >> sh) & m), float((q >> (sh + 8u)) & m), float((q >> (sh + 16u)) & m),
                float((q >> (sh + 24u)) & m));
}

// Chunks per row of k weights of type ty.
uint chunks_of(uint ty, uint k) {
    switch (ty) {
    case T_F32:
    case T_F16: return (k + 3u) / 4u;
    case T_Q4_0:
    case T_Q4_1:
    case T_Q5_0:
    case T_Q5_1:
    case T_Q8_0: return k / 8u;
    case T_Q4_K:
    case T_Q5_K:
    case T_Q6_K: return k / 16u;
    }
    return k / 32u;
}

// Σ w·x over chunk c of the row at byte rb of segment s.
float chunk_dot(uint s, uint ty, uint rb, uint c) {
    switch (ty) {
    case T_F32: {
        const uint e = 4u * c;
        const uint w = (rb >> 2) + e;
        if (e + 4u <= pc.k) {
            vec4 wv = vec4(uintBitsToFloat(WLOAD(s, w)), uintBitsToFloat(WLOAD(s, w + 1u)),
                           uintBitsToFloat(WLOAD(s, w + 2u)), uintBitsToFloat(WLOAD(s, w + 3u)));
            return dot(wv, xv(e));
        }
        float a = 0.0;
        for (uint i = 0u; i < 4u && e + i < pc.k; i++) {
            a += uintBitsToFloat(WLOAD(s, w + i)) * xs(e + i);
        }
        return a;
    }
    case T_F16: {
        const uint e = 4u * c;
        const uint o = rb + 2u * e;
        if (e + 4u <= pc.k) {
            vec4 wv = vec4(unpackHalf2x16(ld_u32(s, o)), unpackHalf2x16(ld_u32(s, o + 4u)));
            return dot(wv, xv(e));
        }
        float a = 0.0;
        for (uint i = 0u; i < 4u && e + i < pc.k; i++) {
            a += ld_f16(s, o + 2u * i) * xs(e + i);
        }
        return a;
    }
    case T_Q4_0:
    case T_Q4_1: {
        const bool q41 = ty == T_Q4_1;
        const uint b = c >> 2, j = c & 3u;
        const uint bo = rb + b * (q41 ? 20u : 18u);
        const float dd = ld_f16(s, bo);
        const float m = q41 ? ld_f16(s, bo + 2u) : -8.0 * dd;
        const uint q = ld_u32(s, bo + (q41 ? 4u : 2u) + 4u * j);
        const vec4 xa = xv(32u * b + 4u * j), xb = xv(32u * b + 16u + 4u * j);
        return dd * (dot(bytes4(q, 0u, 0xFu), xa) + dot(bytes4(q, 4u, 0xFu), xb)) +
               m * (hsum(xa) + hsum(xb));
    }
    case T_Q5_0:
    case T_Q5_1: {
        const bool q51 = ty == T_Q5_1;
        const uint b = c >> 2, j = c & 3u;
        const uint bo = rb + b * (q51 ? 24u : 22u);
        const float dd = ld_f16(s, bo);
        const float m = q51 ? ld_f16(s, bo + 2u) : -16.0 * dd;
        const uint qh = ld_u32(s, bo + (q51 ? 4u : 2u));
        const uint q = ld_u32(s, bo + (q51 ? 8u : 6u) + 4u * j);
        // The high bits of elements 4j..4j+3 and 16+4j.., spread to bit 4 of each byte.
        const uint hl = (qh >> (4u * j)) & 0xFu, hh = (qh >> (16u + 4u * j)) & 0xFu;
        const uint spl = (hl & 1u) | ((hl & 2u) << 7) | ((hl & 4u) << 14) | ((hl & 8u) << 21);
        const uint sph = (hh & 1u) | ((hh & 2u) << 7) | ((hh & 4u) << 14) | ((hh & 8u) << 21);
        const uint lo = (q & 0x0F0F0F0Fu) | (spl << 4);
        const uint hi = ((q >> 4) & 0x0F0F0F0Fu) | (sph << 4);
        const vec4 xa = xv(32u * b + 4u * j), xb = xv(32u * b + 16u + 4u * j);
        return dd * (dot(bytes4(lo, 0u, 0xFFu), xa) + dot(bytes4(hi, 0u, 0xFFu), xb)) +
               m * (hsum(xa) + hsum(xb));
    }
    case T_Q8_0: {
        const uint b = c >> 2, j = c & 3u;
        const uint bo = rb + b * 34u;
        const float dd = ld_f16(s, bo);
        uint q[2];
        LD_RUN(s, bo + 2u + 8u * j, q, 2u);
        const ivec4 ia = ivec4(bitfieldExtract(int(q[0]), 0, 8), bitfieldExtract(int(q[0]), 8, 8),
                               bitfieldExtract(int(q[0]), 16, 8), bitfieldExtract(int(q[0]), 24, 8));
        const ivec4 ib = ivec4(bitfieldExtract(int(q[1]), 0, 8), bitfieldExtract(int(q[1]), 8, 8),
                               bitfieldExtract(int(q[1]), 16, 8), bitfieldExtract(int(q[1]), 24, 8));
        const uint e = 32u * b + 8u * j;
        return dd * (dot(vec4(ia), xv(e)) + dot(vec4(ib), xv(e + 4u)));
    }
    case T_Q4_K:
    case T_Q5_K: {
        // Lane t of a super-block: group j = t / 4 (64 weights), bytes l0..l0+7 of its 32
        // quant bytes: low nibbles are weights 64j + l0.. (sub-block 2j), high nibbles
        // 64j + 32 + l0.. (sub-block 2j + 1).
        const bool q5 = ty == T_Q5_K;
        const uint sb = c >> 4, t = c & 15u, j = t >> 2, l0 = 8u * (t & 3u);
        const uint bo = rb + sb * (q5 ? 176u : 144u);  // a multiple of 4
        const uint wo = bo >> 2;
        const vec2 dm = unpackHalf2x16(WLOAD(s, wo));
        const uvec3 sc = uvec3(WLOAD(s, wo + 1u), WLOAD(s, wo + 2u), WLOAD(s, wo + 3u));
        // 6-bit scale and min of sub-blocks 2j and 2j + 1 (ggml's get_scale_min_k4).
        float sca, mna, scb, mnb;
        {
            const uint ia = 2u * j, ib = 2u * j + 1u;
#define SB(i) ((sc[(i) >> 2] >> (((i) & 3u) * 8u)) & 0xFFu)
            if (j < 2u) {
                sca = float(SB(ia) & 63u);
                mna = float(SB(ia + 4u) & 63u);
                scb = float(SB(ib) & 63u);
                mnb = float(SB(ib + 4u) & 63u);
            } else {
                sca = float((SB(ia + 4u) & 0xFu) | ((SB(ia - 4u) >> 6) << 4));
                mna = float((SB(ia + 4u) >> 4) | ((SB(ia) >> 6) << 4));
                scb = float((SB(ib + 4u) & 0xFu) | ((SB(ib - 4u) >> 6) << 4));
                mnb = float((SB(ib + 4u) >> 4) | ((SB(ib) >> 6) << 4));
            }
#undef SB
        }
        const uint qw = wo + (q5 ? 12u : 4u) + 8u * j + (l0 >> 2);
        const uint q0 = WLOAD(s, qw), q1 = WLOAD(s, qw + 1u);
        uint a0 = q0 & 0x0F0F0F0Fu, a1 = q1 & 0x0F0F0F0Fu;
        uint b0 = (q0 >> 4) & 0x0F0F0F0Fu, b1 = (q1 >> 4) & 0x0F0F0F0Fu;
        if (q5) {
            const uint h0 = WLOAD(s, wo + 4u + (l0 >> 2)), h1 = WLOAD(s, wo + 5u + (l0 >> 2));
            a0 |= ((h0 >> (2u * j)) & 0x01010101u) << 4;
            a1 |= ((h1 >> (2u * j)) & 0x01010101u) << 4;
            b0 |= ((h0 >> (2u * j + 1u)) & 0x01010101u) << 4;
            b1 |= ((h1 >> (2u * j + 1u)) & 0x01010101u) << 4;
        }
        const uint e = 256u * sb + 64u * j + l0;
        const vec4 xa0 = xv(e), xa1 = xv(e + 4u), xb0 = xv(e + 32u), xb1 = xv(e + 36u);
        const float qa = dot(bytes4(a0, 0u, 0xFFu), xa0) + dot(bytes4(a1, 0u, 0xFFu), xa1);
        const float qb = dot(bytes4(b0, 0u, 0xFFu), xb0) + dot(bytes4(b1, 0u, 0xFFu), xb1);
        return dm.x * (sca * qa + scb * qb) -
               dm.y * (mna * (hsum(xa0) + hsum(xa1)) + mnb * (hsum(xb0) + hsum(xb1)));
    }
    case T_Q6_K: {
        // Lane t: half hh = t / 8 (128 weights), l0 = 4 (t mod 8): weights 128hh + l0 + i +
        // {0, 32, 64, 96}, i < 4, from ql bytes l0.. and 32 + l0.. and qh bytes l0...
        const uint sb = c >> 4, t = c & 15u, hh = t >> 3, l0 = 4u * (t & 7u);
        const uint bo = rb + sb * 210u;  // 2-byte aligned
        const float dd = ld_f16(s, bo + 208u);
        const uint qla = ld_u32(s, bo + 64u * hh + l0);
        const uint qlb = ld_u32(s, bo + 64u * hh + 32u + l0);
        const uint qh = ld_u32(s, bo + 128u + 32u * hh + l0);
        uint scw[2];
        LD_RUN(s, bo + 192u + 8u * hh, scw, 2u);
        const int is = int(l0 >> 4) * 8;
        const float s0 = float(bitfieldExtract(int(scw[0]), is, 8));
        const float s2 = float(bitfieldExtract(int(scw[0]), is + 16, 8));
        const float s4 = float(bitfieldExtract(int(scw[1]), is, 8));
        const float s6 = float(bitfieldExtract(int(scw[1]), is + 16, 8));
        const uint q1 = (qla & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4);
        const uint q2 = (qlb & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4);
        const uint q3 = ((qla >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4);
        const uint q4 = ((qlb >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4);
        const uint e = 256u * sb + 128u * hh + l0;
        const vec4 o = vec4(32.0);
        return dd * (s0 * dot(bytes4(q1, 0u, 0xFFu) - o, xv(e)) +
                     s2 * dot(bytes4(q2, 0u, 0xFFu) - o, xv(e + 32u)) +
                     s4 * dot(bytes4(q3, 0u, 0xFFu) - o, xv(e + 64u)) +
                     s6 * dot(bytes4(q4, 0u, 0xFFu) - o, xv(e + 96u)));
    }
    default: {
        // 32-weight units through the generic dequantizer.
        float wv[32];
        dq32(s, ty, rb, c, pc.k, wv);
        float a = 0.0;
        for (uint i4 = 0u; i4 < 8u; i4++) {
            a += dot(vec4(wv[4u * i4], wv[4u * i4 + 1u], wv[4u * i4 + 2u], wv[4u * i4 + 3u]),
                     xv(32u * c + 4u * i4));
        }
        return a;
    }
    }
}

// Σ w·x over this lane's chunks of row `srow` of segment `s`, whose type is `ty`.
float lane_dot(uint s, uint ty, uint srow, uint tid) {
    const uint rb = srow * row_bytes(ty, pc.k);
    const uint nc = chunks_of(ty, pc.k);
    float a = 0.0;
    for (uint c = tid; c < nc; c += WG) {
        a += chunk_dot(s, ty, rb, c);
    }
    return a;
}

// `lane_dot` of row `srow` of segment `seg`, the segment's type a constant (one call per
// segment in the `any` variant, common/seg_types.glsl; a workgroup's lanes take one together).
float row_dot(uint seg, uint srow, uint tid) {
#ifdef WTYPE
    return lane_dot(seg, WTYPE, srow, tid);
#else
#define DOT_STEP(i, T) return lane_dot(i, T, srow, tid)
    PER_SEGMENT(seg, SEG_T0, SEG_T1, SEG_T2, SEG_T3, DOT_STEP)
#undef DOT_STEP
#endif
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
    const uint t = gl_WorkGroupID.y;
    const bool glu = (pc.flags & F_GLU) != 0u;
    g_norm = (pc.flags & F_NORM) != 0u;
    g_xb = pc.x_off + t * pc.x_stride;
    g_x4 = (g_xb & 3u) == 0u;
    uint total = 0u;
    for (uint s = 0u; s < pc.nseg; s++) {
        total += pc.seg_rows[s];
    }
    if (glu) {
        total = pc.seg_rows[0];
    }

    float acc[ROWS * 2u];
    for (uint a = 0u; a < ROWS * 2u; a++) {
        acc[a] = 0.0;
    }
    g_ss = 0.0;
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
            // The chunks of one row cover x once, whatever the type and segment.
            g_ss_on = g_norm && r == 0u && h == 0u;
            acc[r * 2u + h] = row_dot(seg, srow, tid);
        }
    }
    // RMSNorm: the sum of squares of x, gathered above (its scale multiplies every dot product
    // of the row).
    g_ss_on = false;
    const float ss = g_ss;

    const uint sg = gl_SubgroupID;
    for (uint a = 0u; a < ROWS * 2u; a++) {
        const float v = subgroupAdd(acc[a]);
        if (subgroupElect()) {
            part[a * WG + sg] = v;
        }
    }
    {
        const float v = subgroupAdd(ss);
        if (subgroupElect()) {
            part[ROWS * 2u * WG + sg] = v;
        }
    }
    barrier();

    if (tid < ROWS) {
        const uint row = wg * ROWS + tid;
        if (row < total) {
            float g = 0.0, u = 0.0, q = 0.0;
            for (uint i = 0u; i < gl_NumSubgroups; i++) {
                g += part[(tid * 2u) * WG + i];
                u += part[(tid * 2u + 1u) * WG + i];
                q += part[ROWS * 2u * WG + i];
            }
            const float scale = g_norm ? inversesqrt(q / float(pc.k) + pc.eps) : 1.0;
            float v = g * scale;
            if (glu) {
                const float up = u * scale;
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
            const uint yi = t * pc.y_stride + pc.y_off + row;
            if ((pc.flags & F_ACC) != 0u) {
                y[yi] += v;
            } else {
                y[yi] = v;
            }
        }
    }
}
