#version 450
// Causal attention of one query head for one token over the f16 KV cache, in one pass with an
// online softmax (keys processed WG at a time; no score buffer, so any context length works).
// Grid: (n_head, n_tok). Grouped-query: head h reads KV head h / (n_head / n_kv).
// With a sliding window (window > 0) the query at p sees keys p - window + 1 ..= p only.
// Values are summed a packed f16 pair per invocation (a cache word), each invocation owning
// output dimensions 2w and 2w + 1.
//
// ROPE (the `attention_rope` variant, decoding on CPU implementations: one token, n_tok = 1):
// rope_kv.comp folded in, one dispatch less per layer. Binding 1 is the QKV projection instead
// of the rotated queries. Each workgroup rotates its own query head and its KV head's new K row
// (rounded to f16 as the cache holds it) and rounds the new V row, each invocation one rotated
// pair: one angle, its cosine and sine, for the pair's query and key elements. The rows stay in
// shared memory and serve the current position: its score is a tree sum of the invocations'
// pair products (no invocation walks the row while the others wait), its value is added once
// after the last chunk with its final weight. The group's first query head writes the rows into
// the cache for the next tokens; the other workgroups of the group read only earlier positions
// from the cache, so no workgroup reads what another writes in this dispatch.
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
// Cache words (f16 pairs) of the output per invocation.
#define WPT (MAX_D / 2u / WG + 1u)
// Reductions over the workgroup in two steps: NR invocations each fold a stride of WG / NR
// values, then every invocation folds the NR partials (two barriers, not one per halving;
// WG a multiple of NR).
#define NR 8u
shared float qs[MAX_D];
shared float ps[WG];
shared float red[WG];
shared float part_max[NR];
shared float part_sum[NR];
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
        // rope_kv.comp's work for this workgroup's heads (t = 0: decoding only), a pair per
        // invocation: rotated pair j < n_rot / 2 is (2j, 2j + 1) or, NEOX, (j, j + n_rot / 2);
        // the pairs from n_rot / 2 on are (2j, 2j + 1) unrotated, so the pairs cover the head.
        const uint qb = h * D;
        const uint kb = pc.n_head * D + kvh * D;
        const uint vb = kb + kvd;
        const uint rh = pc.n_rot / 2u;
        float part = 0.0;
        for (uint j = tid; j < D / 2u; j += WG) {
            const bool rot = j < rh;
            const uint a = rot && pc.neox != 0u ? j : 2u * j;
            const uint b = rot && pc.neox != 0u ? j + rh : 2u * j + 1u;
            const vec2 cs = rope_cos_sin(rot ? j : 0u, p_last);
            vec2 qv = vec2(qkv[qb + a], qkv[qb + b]);
            vec2 kv = vec2(qkv[kb + a], qkv[kb + b]);
            qv = rot ? rope_pair(qv.x, qv.y, cs) : qv;
            kv = unpackHalf2x16(packHalf2x16(rot ? rope_pair(kv.x, kv.y, cs) : kv));
            const vec2 vv = unpackHalf2x16(packHalf2x16(vec2(qkv[vb + a], qkv[vb + b])));
            qs[a] = qv.x;
            qs[b] = qv.y;
            ks[a] = kv.x;
            ks[b] = kv.y;
            vs[a] = vv.x;
            vs[b] = vv.y;
            part += qv.x * kv.x + qv.y * kv.y;
        }
        // The new position's score, summed below.
        ps[tid] = part;
    }
#else
    for (uint i = tid; i < D; i += WG) {
        qs[i] = q[t * pc.n_head * D + h * D + i];
    }
#endif
    barrier();
#ifdef ROPE
    if (h % (pc.n_head / pc.n_kv) == 0u) {
        // The group's first query head writes the new rows (f16 values: packing is exact).
        const uint wb = (p_last * kvd + kvh * D) / 2u;
        for (uint w = tid; w < D / 2u; w += WG) {
            kc[wb + w] = packHalf2x16(vec2(ks[2u * w], ks[2u * w + 1u]));
            vc[wb + w] = packHalf2x16(vec2(vs[2u * w], vs[2u * w + 1u]));
        }
    }
    if (tid < NR) {
        float x = ps[tid];
        for (uint k = tid + NR; k < WG; k += NR) {
            x += ps[k];
        }
        part_sum[tid] = x;
    }
    barrier();
    // Read before the first chunk's barriers; part_sum is written again after them.
    float s_new = part_sum[0];
    for (uint k = 1u; k < NR; k++) {
        s_new += part_sum[k];
    }
    s_new *= pc.scale;
    // Keys below p_end come from the cache; the new one (p_last) from shared memory.
    const uint p_end = p_last;
#else
    const uint p_end = p_last + 1u;
#endif

    float m = -1.0 / 0.0, l = 0.0;
    vec2 acc[WPT];
    for (uint j = 0u; j < WPT; j++) {
        acc[j] = vec2(0.0);
    }
    const uint p_first = pc.window > 0u && p_last >= pc.window ? p_last + 1u - pc.window : 0u;
    for (uint c0 = p_first; c0 <= p_last; c0 += WG) {
        const uint p = c0 + tid;
        float s = -1.0 / 0.0;
        if (p < p_end) {
            const uint kb = (p * kvd + kvh * D) / 2u;
            float dot_ = 0.0;
            for (uint w = 0u; w < D / 2u; w++) {
                vec2 kv = unpackHalf2x16(kc[kb + w]);
                dot_ += qs[2u * w] * kv.x + qs[2u * w + 1u] * kv.y;
            }
            s = dot_ * pc.scale;
        }
#ifdef ROPE
        s = p == p_last ? s_new : s;
#endif
        red[tid] = s;
        barrier();
        if (tid < NR) {
            float x = red[tid];
            for (uint k = tid + NR; k < WG; k += NR) {
                x = max(x, red[k]);
            }
            part_max[tid] = x;
        }
        barrier();
        float m_new = m;
        for (uint k = 0u; k < NR; k++) {
            m_new = max(m_new, part_max[k]);
        }
        const float e = p <= p_last ? exp(s - m_new) : 0.0;
        ps[tid] = e;
        barrier();
        if (tid < NR) {
            float x = ps[tid];
            for (uint k = tid + NR; k < WG; k += NR) {
                x += ps[k];
            }
            part_sum[tid] = x;
        }
        barrier();
        float sum = part_sum[0];
        for (uint k = 1u; k < NR; k++) {
            sum += part_sum[k];
        }
        const float alpha = exp(m - m_new);
        l = l * alpha + sum;
        // The chunk's keys from the cache (ROPE: the new position's value is added at the end).
        const uint nc = min(WG, p_end - c0);
        for (uint j = 0u; j < WPT; j++) {
            const uint w = tid + j * WG;
            if (w < D / 2u) {
                vec2 a = acc[j] * alpha;
                for (uint i = 0u; i < nc; i++) {
                    a += ps[i] * unpackHalf2x16(vc[((c0 + i) * kvd + kvh * D) / 2u + w]);
                }
                acc[j] = a;
            }
        }
        m = m_new;
        barrier();
    }
#ifdef ROPE
    // The new position's weight: the last chunk's, whose maximum is final.
    const float e_new = ps[(p_last - p_first) % WG];
#endif
    for (uint j = 0u; j < WPT; j++) {
        const uint w = tid + j * WG;
        if (w < D / 2u) {
#ifdef ROPE
            const vec2 a = acc[j] + e_new * vec2(vs[2u * w], vs[2u * w + 1u]);
#else
            const vec2 a = acc[j];
#endif
            const uint ob = t * pc.n_head * D + h * D + 2u * w;
            o[ob] = a.x / l;
            o[ob + 1u] = a.y / l;
        }
    }
}
