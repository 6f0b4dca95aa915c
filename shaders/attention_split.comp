#version 450
// Decode attention at depth, split over the KV range (flash-decoding). Workgroup (kvh, s, z)
// takes KV head kvh's positions [s*chunk, (s+1)*chunk) up to the current one, for up to GMAX
// query heads of that head's group (slice z), so each K/V row is read once for the whole group.
// Per query head it writes the split's running max m, sum l and unnormalised output o[D];
// attention_combine.comp merges the splits. With one split it writes the final output itself.
// Grid: (n_kv, n_split, ceil(group / GMAX)); one token (decode).
//
// ROPE (the `attention_split_rope_…` variants, `PIGPU_VK_ROPE=fold` on the split path):
// rope_kv.comp folded in, as in attention_staged.comp's ROPE. Binding 1 is the QKV projection,
// binding 6 the RoPE table, n_rot and neox follow the push constants. Every workgroup rotates its
// query heads itself; the split that owns the new position (n - 1, the last of its range) builds
// that position's K row (rotated) and V row as rope_kv.comp packs them into shared memory and
// scores and sums it from there, never from the cache; its first slice (z = 0) writes the rows
// into the cache for the next tokens.
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 64;
// Query heads per workgroup: the group size, at most 8 (larger groups take several slices).
layout(constant_id = 1) const uint GMAX = 8;
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
#ifdef ROPE
layout(set = 0, binding = 1) readonly buffer QKV { float qkv[]; };
layout(set = 0, binding = 2) buffer KC { uint kc[]; };
layout(set = 0, binding = 3) buffer VC { uint vc[]; };
layout(set = 0, binding = 6) readonly buffer Freq { float inv_freq[]; };
#else
layout(set = 0, binding = 1) readonly buffer Q { float q[]; };
layout(set = 0, binding = 2) readonly buffer KC { uint kc[]; };
layout(set = 0, binding = 3) readonly buffer VC { uint vc[]; };
#endif
layout(set = 0, binding = 4) writeonly buffer Out { float o[]; };
// [n_head][n_split][2 + D]: m, l, o[D] of each split.
layout(set = 0, binding = 5) writeonly buffer Part { float part[]; };
layout(push_constant) uniform PC {
    uint n_head;
    uint n_kv;
    uint head_dim;
    uint n_tok;
    float scale;
    uint n_split;
    // KV positions per split; 0: ceil(n / n_split) rounded up to WG (n = positions so far).
    uint chunk;
    uint window;  // > 0: sliding window, the query at p sees keys p - window + 1 ..= p
#ifdef ROPE
    uint n_rot;   // rotated dimensions per head (<= D)
    uint neox;    // split-half pairs (qwen2) instead of adjacent ones
#endif
} pc;
#include "common/state.glsl"
#ifdef ROPE
#include "common/rope.glsl"
#endif

#define MAX_D 256u
#define DPT (MAX_D / WG + 1u)
shared float qs[GMAX * MAX_D];
shared float ps[GMAX * WG];
shared float red[GMAX * WG];
#ifdef ROPE
// The new position's K and V rows of this KV head, as the cache words rope_kv.comp writes.
shared uint kn[MAX_D / 2u];
shared uint vn[MAX_D / 2u];
#endif

// Adds key word k (dimensions 2w, 2w + 1) to the scores of the group's ng query heads.
void score_word(inout float sc[GMAX], vec2 k, uint w, uint ng) {
    for (uint g = 0u; g < GMAX; g++) {
        if (g < ng) {
            sc[g] += qs[g * MAX_D + 2u * w] * k.x + qs[g * MAX_D + 2u * w + 1u] * k.y;
        }
    }
}

void main() {
    const uint kvh = gl_WorkGroupID.x, s = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint D = pc.head_dim;
    const uint kvd = pc.n_kv * D;
    const uint group = pc.n_head / pc.n_kv;
    const uint g0 = gl_WorkGroupID.z * GMAX;
    const uint ng = min(GMAX, group - g0);
    const uint h0 = kvh * group + g0;  // first query head of this workgroup
    const uint n = state[S_POS] + 1u;  // positions 0..n-1 are attended to
    const uint chunk = pc.chunk != 0u ? pc.chunk : ((n + pc.n_split - 1u) / pc.n_split + WG - 1u) / WG * WG;
    const uint b0 = min(s * chunk, n);
    const uint end = min(b0 + chunk, n);
    // Keys before the sliding window are skipped (a split wholly before it stays empty).
    const uint begin = max(b0, pc.window > 0u && n > pc.window ? n - pc.window : 0u);

    // The queries, pre-scaled, so a score is one dot product.
    for (uint i = tid; i < ng * D; i += WG) {
#ifdef ROPE
        // Rotated at the new position, as rope_kv.comp writes them.
        const float qv = rope_rotated(h0 * D + (i / D) * D, i % D, n - 1u, pc.n_rot, pc.neox != 0u);
#else
        const float qv = q[h0 * D + i];
#endif
        qs[(i / D) * MAX_D + i % D] = qv * pc.scale;
    }
#ifdef ROPE
    // This split owns the new position: its range ends there (uniform in the workgroup).
    const bool owner = begin < end && end == n;
    if (owner) {
        const uint kb = pc.n_head * D + kvh * D, vb = kb + kvd;
        const uint wb = ((n - 1u) * kvd + kvh * D) / 2u;
        for (uint w = tid; w < D / 2u; w += WG) {
            const float k0 = rope_rotated(kb, 2u * w, n - 1u, pc.n_rot, pc.neox != 0u);
            const float k1 = rope_rotated(kb, 2u * w + 1u, n - 1u, pc.n_rot, pc.neox != 0u);
            const uint kw = packHalf2x16(vec2(k0, k1));
            const uint vw = packHalf2x16(vec2(qkv[vb + 2u * w], qkv[vb + 2u * w + 1u]));
            kn[w] = kw;
            vn[w] = vw;
            if (gl_WorkGroupID.z == 0u) {
                kc[wb + w] = kw;
                vc[wb + w] = vw;
            }
        }
    }
    // Keys below `cached` come from the cache, the one at n - 1 (if this split has it) from kn.
    const uint cached = owner ? n - 1u : end;
#else
    const uint cached = end;
#endif
    barrier();

    float m[GMAX], l[GMAX], acc[GMAX][DPT];
    for (uint g = 0u; g < GMAX; g++) {
        m[g] = -1.0 / 0.0;
        l[g] = 0.0;
        for (uint j = 0u; j < DPT; j++) {
            acc[g][j] = 0.0;
        }
    }
    for (uint c0 = begin; c0 < end; c0 += WG) {
        // One key per invocation, scored against every query head of the group.
        const uint p = c0 + tid;
        const bool live = p < end;
        float sc[GMAX];
        for (uint g = 0u; g < GMAX; g++) {
            sc[g] = 0.0;
        }
        if (live && p < cached) {
            const uint kb = (p * kvd + kvh * D) / 2u;
            for (uint w = 0u; w < D / 2u; w++) {
                score_word(sc, unpackHalf2x16(kc[kb + w]), w, ng);
            }
        }
#ifdef ROPE
        // Only the chunk that holds the new key (the owner's last) takes this branch, all of
        // its invocations together; one of them scores that key from shared memory.
        if (cached < end && cached - min(cached, c0) < WG) {
            if (p == cached) {
                for (uint w = 0u; w < D / 2u; w++) {
                    score_word(sc, unpackHalf2x16(kn[w]), w, ng);
                }
            }
        }
#endif
        for (uint g = 0u; g < GMAX; g++) {
            red[g * WG + tid] = live ? sc[g] : -1.0 / 0.0;
        }
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) {
                for (uint g = 0u; g < ng; g++) {
                    red[g * WG + tid] = max(red[g * WG + tid], red[g * WG + tid + st]);
                }
            }
            barrier();
        }
        float m_new[GMAX];
        for (uint g = 0u; g < GMAX; g++) {
            m_new[g] = max(m[g], red[g * WG]);
        }
        barrier();
        for (uint g = 0u; g < GMAX; g++) {
            const float e = live && g < ng ? exp(sc[g] - m_new[g]) : 0.0;
            ps[g * WG + tid] = e;
            red[g * WG + tid] = e;
        }
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) {
                for (uint g = 0u; g < ng; g++) {
                    red[g * WG + tid] += red[g * WG + tid + st];
                }
            }
            barrier();
        }
        float alpha[GMAX];
        for (uint g = 0u; g < GMAX; g++) {
            alpha[g] = exp(m[g] - m_new[g]);
            l[g] = l[g] * alpha[g] + red[g * WG];
            m[g] = m_new[g];
        }
        // Values: one dimension per invocation, each V element read once for the group.
        const uint nk = min(WG, end - c0);
        // Of which from the cache (the new position, if in this chunk, is its last key).
        const uint nkc = min(nk, cached - min(cached, c0));
        for (uint j = 0u; j < DPT; j++) {
            const uint d = tid + j * WG;
            if (d < D) {
                float a[GMAX];
                for (uint g = 0u; g < GMAX; g++) {
                    a[g] = acc[g][j] * alpha[g];
                }
                for (uint i = 0u; i < nkc; i++) {
                    const uint vi = (c0 + i) * kvd + kvh * D + d;
                    const vec2 vv = unpackHalf2x16(vc[vi / 2u]);
                    const float v = (vi & 1u) == 0u ? vv.x : vv.y;
                    for (uint g = 0u; g < GMAX; g++) {
                        a[g] += ps[g * WG + i] * v;
                    }
                }
#ifdef ROPE
                if (nkc < nk) {
                    const vec2 vv = unpackHalf2x16(vn[d / 2u]);
                    const float v = (d & 1u) == 0u ? vv.x : vv.y;
                    for (uint g = 0u; g < GMAX; g++) {
                        a[g] += ps[g * WG + nkc] * v;
                    }
                }
#endif
                for (uint g = 0u; g < GMAX; g++) {
                    acc[g][j] = a[g];
                }
            }
        }
        barrier();
    }
    for (uint g = 0u; g < GMAX; g++) {
        if (g < ng) {
            const uint h = h0 + g;
            if (pc.n_split == 1u) {
                for (uint j = 0u; j < DPT; j++) {
                    const uint d = tid + j * WG;
                    if (d < D) {
                        o[h * D + d] = acc[g][j] / l[g];
                    }
                }
            } else {
                const uint base = (h * pc.n_split + s) * (D + 2u);
                if (tid == 0u) {
                    part[base] = m[g];
                    part[base + 1u] = l[g];
                }
                for (uint j = 0u; j < DPT; j++) {
                    const uint d = tid + j * WG;
                    if (d < D) {
                        part[base + 2u + d] = acc[g][j];
                    }
                }
            }
        }
    }
}
