#version 450
// Prompt attention for CPU implementations (lavapipe): one query row per invocation and query
// head, a workgroup of one subgroup (SG invocations) takes SG consecutive tokens of G query
// heads that share one KV head, and walks the keys of their causal range together, KB at a time,
// with an online softmax per row. Grid: (n_head / G, ceil(n_tok / SG)); the host picks G to
// divide the grouped-query group n_head / n_kv. Head h reads KV head h / (n_head / n_kv).
// With a sliding window (window > 0) the query at p sees keys p - window + 1 ..= p only.
//
// Why this shape on gallivm (Mesa's JIT behind lavapipe; docs/vulkan.md, "The prompt attention
// on lavapipe"): a storage-buffer load is a loop over the SIMD lanes whatever the address, a
// shared-memory access too, `if` runs both sides, and barriers switch between the workgroup's
// fibres. Here there is no shared memory and no barrier; each invocation loads NW distinct
// words of a K or V row (the subgroup covers the row), and subgroupBroadcast with a constant
// lane (an extract and a splat) hands every word to all rows of all G heads, so a word's load
// and broadcast serve SG·G rows. The query rows and the output accumulators are private arrays
// indexed by constants only ([[unroll]]), so they stay in registers (or plain stack slots),
// never per-lane scratch. Every row of the block runs the block's key range; a key outside a
// row's causal range or window is masked by selects.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
layout(constant_id = 0) const uint SG = 8;  // invocations = subgroup size = query rows (<= 16)
layout(constant_id = 1) const uint D = 64;  // head size (even, <= 256)
layout(constant_id = 2) const uint KB = 2;  // keys per step (one rescale of the output per step)
layout(constant_id = 3) const uint G = 1;   // query heads per workgroup (of one KV head)
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer Q { float q[]; };
layout(set = 0, binding = 2) readonly buffer KC { uint kc[]; };
layout(set = 0, binding = 3) readonly buffer VC { uint vc[]; };
layout(set = 0, binding = 4) writeonly buffer Out { float o[]; };
#ifdef TEXEL
// The same caches as uniform texel buffers (R32_UINT views; the host binds them where the
// views reach the whole cache): gallivm fetches texels with one masked vector gather, where a
// storage-buffer load is a loop over the SIMD lanes with a bounds check each (docs/vulkan.md,
// "Reading weights through texel buffers").
layout(set = 0, binding = 6) uniform usamplerBuffer KT;
layout(set = 0, binding = 7) uniform usamplerBuffer VT;
#define KLOAD(i) texelFetch(KT, int(i)).x
#define VLOAD(i) texelFetch(VT, int(i)).x
#else
#define KLOAD(i) kc[i]
#define VLOAD(i) vc[i]
#endif
layout(push_constant) uniform PC {
    uint n_head;
    uint n_kv;
    uint head_dim;  // (D is the constant)
    uint n_tok;
    float scale;
    uint n_split_;  // (split kernel only)
    uint chunk_;    // (split kernel only)
    uint window;    // > 0: sliding window, the query at p sees keys p - window + 1 ..= p
} pc;
#include "common/state.glsl"

const uint W = D / 2u;               // f16 pairs per K or V row of one head
const uint NW = (W + SG - 1u) / SG;  // pairs each invocation loads per row
const float NEG_INF = -1.0 / 0.0;

// Lane I's pair of word c of the row in `f` (vec2 per invocation), handed to every row: `F(w, v2)`
// for the pair index w = c·SG + I, where it exists. Lanes are literals (subgroupBroadcast takes
// constants on SPIR-V 1.3); the `if`s on constants vanish when the pipeline is specialised.
#define LANE(f, c, I, F)                                       \
    if (I < SG && (c) * SG + I < W) {                          \
        const vec2 v2_ = subgroupBroadcast(f[c], I);           \
        F((c) * SG + I, v2_)                                   \
    }
#define LANES(f, c, F)                                                                         \
    LANE(f, c, 0u, F) LANE(f, c, 1u, F) LANE(f, c, 2u, F) LANE(f, c, 3u, F)                    \
    LANE(f, c, 4u, F) LANE(f, c, 5u, F) LANE(f, c, 6u, F) LANE(f, c, 7u, F)                    \
    LANE(f, c, 8u, F) LANE(f, c, 9u, F) LANE(f, c, 10u, F) LANE(f, c, 11u, F)                  \
    LANE(f, c, 12u, F) LANE(f, c, 13u, F) LANE(f, c, 14u, F) LANE(f, c, 15u, F)

float qv[G * D];   // this invocation's query rows (head g at g·D), scaled to log2 units
float acc[G * D];  // their outputs, unnormalised
float sc[G * 4u];  // partial dot products (independent chains per head)
float ej[G];       // the current key's weight per head

#define DOT(w, v2)                                                                             \
    [[unroll]] for (uint g = 0u; g < G; g++) {                                                 \
        sc[g * 4u + ((w) & 3u)] += qv[g * D + 2u * (w)] * v2_.x + qv[g * D + 2u * (w) + 1u] * v2_.y; \
    }
#define AXPY(w, v2)                                                                            \
    [[unroll]] for (uint g = 0u; g < G; g++) {                                                 \
        acc[g * D + 2u * (w)] += ej[g] * v2_.x;                                                \
        acc[g * D + 2u * (w) + 1u] += ej[g] * v2_.y;                                           \
    }

void main() {
    const uint lane = gl_SubgroupInvocationID;
    const uint h0 = gl_WorkGroupID.x * G;
    const uint t0 = gl_WorkGroupID.y * SG;
    const uint t_last = min(t0 + SG, pc.n_tok) - 1u;
    const uint t = min(t0 + lane, t_last);  // rows past the batch repeat its last (not written)
    const uint kvh = h0 / (pc.n_head / pc.n_kv);
    const uint rw = pc.n_kv * W;            // words per cache row
    const uint base = kvh * W;
    const uint pos0 = state[S_POS];
    const uint p_row = pos0 + t;
    const uint win = pc.window;
    const uint row_first = win > 0u && p_row >= win ? p_row + 1u - win : 0u;
    const uint p_top = pos0 + t0;
    const uint p_lo = win > 0u && p_top >= win ? p_top + 1u - win : 0u;
    const uint p_hi = pos0 + t_last;

    const float qscale = pc.scale * 1.4426950408889634;
    const uint qb = (t * pc.n_head + h0) * D;  // head h0 + g's row at qb + g·D
    [[unroll]] for (uint i = 0u; i < G * D; i++) {
        qv[i] = q[qb + i] * qscale;
        acc[i] = 0.0;
    }
    float m[G], l[G];
    [[unroll]] for (uint g = 0u; g < G; g++) {
        m[g] = NEG_INF;
        l[g] = 0.0;
    }
    for (uint p0 = p_lo; p0 <= p_hi; p0 += KB) {
        float s[KB * G];
        [[unroll]] for (uint j = 0u; j < KB; j++) {
            const uint p = min(p0 + j, p_hi);
            const uint kb = p * rw + base;
            vec2 kf[NW];
            [[unroll]] for (uint c = 0u; c < NW; c++) {
                kf[c] = unpackHalf2x16(KLOAD(kb + min(lane + c * SG, W - 1u)));
            }
            [[unroll]] for (uint i = 0u; i < G * 4u; i++) {
                sc[i] = 0.0;
            }
            [[unroll]] for (uint c = 0u; c < NW; c++) {
                LANES(kf, c, DOT)
            }
            const bool ok = p0 + j <= p_row && p0 + j >= row_first;
            [[unroll]] for (uint g = 0u; g < G; g++) {
                const uint i = g * 4u;
                s[j * G + g] = ok ? (sc[i] + sc[i + 1u]) + (sc[i + 2u] + sc[i + 3u]) : NEG_INF;
            }
        }
        [[unroll]] for (uint g = 0u; g < G; g++) {
            float m_new = m[g];
            [[unroll]] for (uint j = 0u; j < KB; j++) {
                m_new = max(m_new, s[j * G + g]);
            }
            // No key of this row yet (a window's start): nothing to rescale, every weight 0.
            const float mb = m_new == NEG_INF ? 0.0 : m_new;
            const float alpha = m[g] == NEG_INF ? 0.0 : exp2(m[g] - mb);
            l[g] *= alpha;
            [[unroll]] for (uint d = 0u; d < D; d++) {
                acc[g * D + d] *= alpha;
            }
            [[unroll]] for (uint j = 0u; j < KB; j++) {
                const float sj = s[j * G + g];
                s[j * G + g] = sj == NEG_INF ? 0.0 : exp2(sj - mb);  // now the key's weight
                l[g] += s[j * G + g];
            }
            m[g] = m_new;
        }
        [[unroll]] for (uint j = 0u; j < KB; j++) {
            [[unroll]] for (uint g = 0u; g < G; g++) {
                ej[g] = s[j * G + g];
            }
            const uint vb = min(p0 + j, p_hi) * rw + base;
            vec2 vf[NW];
            [[unroll]] for (uint c = 0u; c < NW; c++) {
                vf[c] = unpackHalf2x16(VLOAD(vb + min(lane + c * SG, W - 1u)));
            }
            [[unroll]] for (uint c = 0u; c < NW; c++) {
                LANES(vf, c, AXPY)
            }
        }
    }
    if (t0 + lane <= t_last) {
        [[unroll]] for (uint g = 0u; g < G; g++) {
            const float inv = 1.0 / l[g];
            [[unroll]] for (uint d = 0u; d < D; d++) {
                o[qb + g * D + d] = acc[g * D + d] * inv;
            }
        }
    }
}
