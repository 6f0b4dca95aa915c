#version 450
// Causal attention for a prompt batch, BR query rows of one head per workgroup: the keys and
// values are read from the f16 cache once per BR rows (not once per row), a BC-key tile at a
// time staged in shared memory, with an online softmax (no score buffer beyond one BR x BC
// tile, so any context length works). Tiles past the block's last position are never read;
// only the diagonal tiles are masked.
// Grid: (n_head, ceil(n_tok / BR), n_split). Grouped-query: head h reads KV head h / (n_head / n_kv).
// Same bindings and push constants as attention.comp (one descriptor set serves both).
// Split over the KV range (n_split > 1, a short batch deep in the cache: attention.rs,
// `Splits::prompt_split`): workgroup z takes the keys at positions [z·chunk, (z+1)·chunk) and
// writes its rows' partial max, sum and unnormalized output to `part` ([token][head][split]
// [2 + D]), which attention_combine.comp merges; a split with no key for a row writes -inf, 0.
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint BR = 16;   // query rows per workgroup
layout(constant_id = 2) const uint BC = 32;   // keys per tile
layout(constant_id = 3) const uint D = 64;    // head dimension (even)
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer Q { float q[]; };
layout(set = 0, binding = 2) readonly buffer KC { uint kc[]; };
layout(set = 0, binding = 3) readonly buffer VC { uint vc[]; };
layout(set = 0, binding = 4) writeonly buffer Out { float o[]; };
layout(set = 0, binding = 5) writeonly buffer Part { float part[]; };
layout(push_constant) uniform PC {
    uint n_head;
    uint n_kv;
    uint head_dim;
    uint n_tok;
    float scale;
    uint n_split;   // 0 or 1: not split (the output is written)
    uint chunk;     // positions per split (a multiple of BC) when split
    uint window;    // > 0: sliding window, the query at p sees keys p - window + 1 ..= p
} pc;
#include "common/state.glsl"

const uint DW = D / 2u;          // f16 pairs per key row
const uint KS = DW + 1u;         // padded row stride of the K/V tiles (words)
const uint NO = (BR * D + WG - 1u) / WG;  // outputs per invocation

shared float Qs[BR * D];         // queries, pre-multiplied by the scale
shared uint Ks[BC * KS];         // K tile, f16 pairs
shared uint Vs[BC * KS];         // V tile, f16 pairs
shared float Ps[BR * BC];        // scores, then probabilities
shared float alpha_s[BR];        // per-row rescale of the running output
shared float l_s[BR];            // per-row softmax denominators (at the end)

void main() {
    const uint h = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    const uint t0 = gl_WorkGroupID.y * BR;
    const uint nr = min(BR, pc.n_tok - t0);
    const uint kvd = pc.n_kv * D;
    const uint kvh = h / (pc.n_head / pc.n_kv);
    const uint pos0 = state[S_POS] + t0;  // row r attends to positions 0..=pos0 + r
    const uint qd = pc.n_head * D;
    for (uint i = tid; i < BR * D; i += WG) {
        const uint r = i / D, d = i % D;
        Qs[i] = r < nr ? q[(t0 + r) * qd + h * D + d] * pc.scale : 0.0;
    }
    float acc[NO];
    for (uint j = 0u; j < NO; j++) {
        acc[j] = 0.0;
    }
    // Row `tid` (tid < BR) keeps its running max and sum in registers.
    float m = -1.0 / 0.0, l = 0.0;
    uint p_end = pos0 + nr;  // keys 0..p_end are read
    // First key any row of the block sees (row 0 has the earliest window).
    uint p_first = pc.window > 0u && pos0 >= pc.window ? pos0 + 1u - pc.window : 0u;
    const bool split = pc.n_split > 1u;
    if (split) {
        const uint lo = gl_WorkGroupID.z * pc.chunk;
        p_first = max(p_first, lo);
        p_end = min(p_end, lo + pc.chunk);
    }
    for (uint c0 = p_first; c0 < p_end; c0 += BC) {
        const uint nc = min(BC, p_end - c0);
        barrier();  // the previous tile is no longer read
        for (uint i = tid; i < BC * DW; i += WG) {
            const uint c = i / DW, w = i % DW;
            uint kw = 0u, vw = 0u;
            if (c < nc) {
                const uint g = ((c0 + c) * kvd + kvh * D) / 2u + w;
                kw = kc[g];
                vw = vc[g];
            }
            Ks[c * KS + w] = kw;
            Vs[c * KS + w] = vw;
        }
        barrier();
        // Scores S = Q K^T, causal mask by position.
        for (uint i = tid; i < BR * BC; i += WG) {
            const uint r = i / BC, c = i % BC;
            float s = -1.0 / 0.0;
            const uint p = c0 + c;
            if (r < nr && c < nc && p <= pos0 + r && (pc.window == 0u || p + pc.window > pos0 + r)) {
                s = 0.0;
                for (uint w = 0u; w < DW; w++) {
                    const vec2 k2 = unpackHalf2x16(Ks[c * KS + w]);
                    s += Qs[r * D + 2u * w] * k2.x + Qs[r * D + 2u * w + 1u] * k2.y;
                }
            }
            Ps[i] = s;
        }
        barrier();
        // Online softmax, one invocation per row.
        if (tid < BR) {
            float mx = m;
            for (uint c = 0u; c < BC; c++) {
                mx = max(mx, Ps[tid * BC + c]);
            }
            // A row with every key masked so far keeps m = -inf: nothing to rescale.
            const bool live = mx > -1.0 / 0.0;
            const float a = live ? exp(m - mx) : 1.0;
            float sum = 0.0;
            for (uint c = 0u; c < BC; c++) {
                const float p = live ? exp(Ps[tid * BC + c] - mx) : 0.0;
                Ps[tid * BC + c] = p;
                sum += p;
            }
            l = l * a + sum;
            m = mx;
            alpha_s[tid] = a;
        }
        barrier();
        // O = O * alpha + P V.
        for (uint j = 0u; j < NO; j++) {
            const uint oi = tid + j * WG;
            if (oi < BR * D) {
                const uint r = oi / D, d = oi % D;
                float a = acc[j] * alpha_s[r];
                for (uint c = 0u; c < nc; c++) {
                    const vec2 v2 = unpackHalf2x16(Vs[c * KS + d / 2u]);
                    a += Ps[r * BC + c] * ((d & 1u) == 0u ? v2.x : v2.y);
                }
                acc[j] = a;
            }
        }
    }
    if (split) {
        // [token][head][split][m, l, D outputs], rows past the batch not written.
        const uint stride = D + 2u;
        const uint h_stride = pc.n_split * stride;
        const uint sb = gl_WorkGroupID.z * stride;
        if (tid < nr) {
            const uint b = ((t0 + tid) * pc.n_head + h) * h_stride + sb;
            part[b] = m;
            part[b + 1u] = l;
        }
        for (uint j = 0u; j < NO; j++) {
            const uint oi = tid + j * WG;
            if (oi < BR * D) {
                const uint r = oi / D, d = oi % D;
                if (r < nr) {
                    part[((t0 + r) * pc.n_head + h) * h_stride + sb + 2u + d] = acc[j];
                }
            }
        }
        return;
    }
    if (tid < BR) {
        l_s[tid] = l;
    }
    barrier();
    for (uint j = 0u; j < NO; j++) {
        const uint oi = tid + j * WG;
        if (oi < BR * D) {
            const uint r = oi / D, d = oi % D;
            if (r < nr) {
                o[(t0 + r) * qd + h * D + d] = acc[j] / l_s[r];
            }
        }
    }
}
