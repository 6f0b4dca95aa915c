#version 450
// Causal attention of one query head for one token over the f16 KV cache, in one pass with an
// online softmax (keys processed WG at a time; no score buffer, so any context length works).
// Grid: (n_head, n_tok). Grouped-query: head h reads KV head h / (n_head / n_kv).
// With a sliding window (window > 0) the query at p sees keys p - window + 1 ..= p only.
//
// ROPE (the `attention_rope` variant, decoding on CPU implementations: one token, n_tok = 1):
// rope_kv.comp folded in, one dispatch less per layer. Binding 1 is the QKV projection instead
// of the rotated queries; each workgroup rotates its own query head and computes its KV head's
// new K (rotated) and V rows at the current position, rounded to f16 as the cache holds them,
// into shared memory, and uses them for that position; the group's first query head writes
// them into the cache for the next tokens. The other workgroups of the group read only earlier
// positions from the cache, so no workgroup reads what another writes in this dispatch.
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
#ifdef ROPE
layout(set = 0, binding = 1) readonly buffer QKV { float qkv[]; };
layout(set = 0, binding = 2) buffer KC { uint kc[]; };
layout(set = 0, binding = 3) buffer VC { uint vc[]; };
layout(set = 0, binding = 5) readonly buffer Freq { float inv_freq[]; };
#else
layout(set = 0, binding = 1) readonly buffer Q { float q[]; };
layout(set = 0, binding = 2) readonly buffer KC { uint kc[]; };
layout(set = 0, binding = 3) readonly buffer VC { uint vc[]; };
#endif
layout(set = 0, binding = 4) writeonly buffer Out { float o[]; };
layout(push_constant) uniform PC {
    uint n_head;
    uint n_kv;
    uint head_dim;
    uint n_tok;
    float scale;
    uint n_split_;  // (split kernel only)
    uint chunk_;    // (split kernel only)
    uint window;    // > 0: sliding window, the query at p sees keys p - window + 1 ..= p
#ifdef ROPE
    uint n_rot;     // rotated dimensions per head (<= D)
    uint neox;      // split-half pairs (qwen2) instead of adjacent ones
#endif
} pc;
#include "common/state.glsl"
#ifdef ROPE
#include "common/rope.glsl"
#endif

#define MAX_D 256u
#define DPT (MAX_D / WG + 1u)
shared float qs[MAX_D];
shared float ps[WG];
shared float red[WG];
#ifdef ROPE
// The new position's K and V rows of this workgroup's KV head, as f16 values.
shared float ks[MAX_D];
shared float vs[MAX_D];
#endif

void main() {
    const uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint D = pc.head_dim;
    const uint kvd = pc.n_kv * D;
    const uint kvh = h / (pc.n_head / pc.n_kv);
    const uint p_last = state[S_POS] + t;  // attends to positions 0..=p_last
#ifdef ROPE
    {
        // rope_kv.comp's work for this workgroup's heads (t = 0: decoding only).
        const uint stride = (pc.n_head + 2u * pc.n_kv) * D;
        const uint qb = t * stride + h * D;
        const uint kb = t * stride + pc.n_head * D + kvh * D;
        const uint vb = kb + kvd;
        const bool neox = pc.neox != 0u;
        const bool writer = h % (pc.n_head / pc.n_kv) == 0u;
        for (uint i = 2u * tid; i < D; i += 2u * WG) {
            qs[i] = rope_rotated(qb, i, p_last, pc.n_rot, neox);
            qs[i + 1u] = rope_rotated(qb, i + 1u, p_last, pc.n_rot, neox);
            const uint kw = packHalf2x16(vec2(rope_rotated(kb, i, p_last, pc.n_rot, neox),
                                              rope_rotated(kb, i + 1u, p_last, pc.n_rot, neox)));
            const uint vw = packHalf2x16(vec2(qkv[vb + i], qkv[vb + i + 1u]));
            const vec2 k2 = unpackHalf2x16(kw), v2 = unpackHalf2x16(vw);
            ks[i] = k2.x;
            ks[i + 1u] = k2.y;
            vs[i] = v2.x;
            vs[i + 1u] = v2.y;
            if (writer) {
                const uint w = (p_last * kvd + kvh * D + i) / 2u;
                kc[w] = kw;
                vc[w] = vw;
            }
        }
    }
#else
    for (uint i = tid; i < D; i += WG) {
        qs[i] = q[t * pc.n_head * D + h * D + i];
    }
#endif
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    float acc[DPT];
    for (uint j = 0u; j < DPT; j++) {
        acc[j] = 0.0;
    }
    const uint p_first = pc.window > 0u && p_last >= pc.window ? p_last + 1u - pc.window : 0u;
    for (uint c0 = p_first; c0 <= p_last; c0 += WG) {
        const uint p = c0 + tid;
        float s = -1.0 / 0.0;
#ifdef ROPE
        if (p == p_last) {
            float dot_ = 0.0;
            for (uint w = 0u; w < D / 2u; w++) {
                dot_ += qs[2u * w] * ks[2u * w] + qs[2u * w + 1u] * ks[2u * w + 1u];
            }
            s = dot_ * pc.scale;
        } else
#endif
        if (p <= p_last) {
            const uint kb = (p * kvd + kvh * D) / 2u;
            float dot_ = 0.0;
            for (uint w = 0u; w < D / 2u; w++) {
                vec2 kv = unpackHalf2x16(kc[kb + w]);
                dot_ += qs[2u * w] * kv.x + qs[2u * w + 1u] * kv.y;
            }
            s = dot_ * pc.scale;
        }
        red[tid] = s;
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) {
                red[tid] = max(red[tid], red[tid + st]);
            }
            barrier();
        }
        const float m_new = max(m, red[0]);
        barrier();
        const float e = p <= p_last ? exp(s - m_new) : 0.0;
        ps[tid] = e;
        red[tid] = e;
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) {
                red[tid] += red[tid + st];
            }
            barrier();
        }
        const float alpha = exp(m - m_new);
        l = l * alpha + red[0];
        const uint nk = min(WG, p_last + 1u - c0);
#ifdef ROPE
        // The new position (the last key of the last chunk) from shared memory.
        const bool last = c0 + nk == p_last + 1u;
        const uint nc = last ? nk - 1u : nk;
#else
        const uint nc = nk;
#endif
        for (uint j = 0u; j < DPT; j++) {
            const uint d = tid + j * WG;
            if (d < D) {
                float a = acc[j] * alpha;
                for (uint i = 0u; i < nc; i++) {
                    const uint vi = (c0 + i) * kvd + kvh * D + d;
                    vec2 vv = unpackHalf2x16(vc[vi / 2u]);
                    a += ps[i] * ((vi & 1u) == 0u ? vv.x : vv.y);
                }
#ifdef ROPE
                if (last) {
                    a += ps[nc] * vs[d];
                }
#endif
                acc[j] = a;
            }
        }
        m = m_new;
        barrier();
    }
    for (uint j = 0u; j < DPT; j++) {
        const uint d = tid + j * WG;
        if (d < D) {
            o[t * pc.n_head * D + h * D + d] = acc[j] / l;
        }
    }
}
