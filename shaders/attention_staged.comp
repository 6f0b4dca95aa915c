#version 450
// Decode attention at depth for GPUs, split over the KV range like attention_split.comp (same
// grid, bindings, push constants, partials and combine pass; issue 11, after llama.cpp's
// flash_attn.comp, ../shared/design/gpu-kernels.md §3). Workgroup (kvh, s, z) takes KV head
// kvh's positions of split s for G query heads of that head's group (slice z), BC keys a tile:
//   1. the K and V tiles are staged in shared memory with uvec4 loads (8 halves), consecutive
//      lanes reading consecutive 16 bytes of a row, so a warp's load is 512 contiguous bytes;
//   2. scores: DS lanes per (query head, key), lane dp taking the uvec4s dp, dp + DS, ... of
//      the key row (DS neighbouring lanes read neighbouring 16 bytes: no bank conflicts, no
//      padding needed), summed by subgroupShuffleXor; every lane of the workgroup is busy for
//      every query head (the (head, key, part) tasks are spread over all lanes); the tile's max
//      per head is a subgroupMax, one shared slot per subgroup;
//   3. probabilities p = exp(s - m_new) once per (head, key), written over the scores;
//   4. output: lanes own 4 contiguous dimensions of one head (KP key phases when there are
//      more lanes than (head, 4 dimensions) pairs), reading V as uvec2s from the staged tile;
//      the running sum l rides along, so no per-tile sum reduction is needed.
// Four barriers per tile of BC keys, whatever G. The running max m per head is double-buffered
// in shared memory by tile parity. Needs subgroup arithmetic and shuffles, subgroups of a size
// that is a multiple of DS and divides BC * DS and WG, and full subgroups (the engine asks for
// them where the device can promise them). D: head size, a multiple of 8 (at most 256).
// Grid: (n_kv, n_split, ceil(group / G)); one token (decode).
//
// ROPE (the `attention_staged_rope_…` variants, `PIGPU_VK_ROPE=fold` on the split path):
// rope_kv.comp folded in. Binding 1 is the QKV projection instead of the rotated queries, binding
// 6 the RoPE table, and n_rot, neox follow the push constants. Every workgroup rotates its own
// query heads (rope_rotated, the function rope_kv.comp runs, so the queries are its bits). The
// new position (n - 1) is never read from the cache: the split that owns it (always the last
// non-empty one, whose range ends at n) stages its K row rotated and its V row from the QKV
// projection, each lane its 8 halves of the row as rope_kv.comp packs them, and the owner's
// first slice (z = 0) also writes those words into the cache for the next tokens, so exactly one
// workgroup per KV head writes and no workgroup reads what another writes in this dispatch.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint G = 8;    // query heads per workgroup
layout(constant_id = 2) const uint D = 128;  // head size, a multiple of 8
layout(constant_id = 3) const uint BC = 32;  // keys per tile
layout(constant_id = 4) const uint DS = 8;   // lanes per (head, key) score
layout(constant_id = 5) const uint KP = 1;   // key phases of the output accumulation
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
#ifdef ROPE
layout(set = 0, binding = 1) readonly buffer QKV { float qkv[]; };
layout(set = 0, binding = 2) buffer KC { uvec4 kc[]; };
layout(set = 0, binding = 3) buffer VC { uvec4 vc[]; };
layout(set = 0, binding = 6) readonly buffer Freq { float inv_freq[]; };
#else
layout(set = 0, binding = 1) readonly buffer Q { float q[]; };
layout(set = 0, binding = 2) readonly buffer KC { uvec4 kc[]; };
layout(set = 0, binding = 3) readonly buffer VC { uvec4 vc[]; };
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
    // KV positions per split; 0: ceil(n / n_split) rounded up to 64 (n = positions so far).
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

// Element i of the head starting at float hb of the QKV projection, rotated for position p as
// rope_kv.comp rotates it.
float rotated(uint hb, uint i, uint p) {
    return rope_rotated(hb, i, p, pc.n_rot, pc.neox != 0u);
}

// Two elements as one f16 pair.
uint pack2(float a, float b) {
    return packHalf2x16(vec2(a, b));
}
#endif

const uint R = D / 8u;                      // uvec4s per key row
const uint RI = (R + DS - 1u) / DS;         // uvec4s per score lane
const uint D4 = D / 4u;                     // 4-dimension groups per head
const uint NA = G * KP * D4;                // output tasks
const uint NTA = (NA + WG - 1u) / WG;       // output tasks per lane
const uint NSL = BC;                        // max slots per head (BC * DS / subgroup size <= BC)

shared uvec4 Ks[BC * R];
shared uvec2 Vs[BC * R * 2u];  // as uvec2s: 4 dimensions per output lane
// Queries pre-scaled, as two vec4 halves of each 8-dimension group (conflict-free reads).
shared vec4 QL[G * R];
shared vec4 QH[G * R];
shared float SP[G * BC];      // scores, then probabilities
shared float Msl[G * NSL];    // per-subgroup tile maxima
shared float Mb[2u * G];      // running max per head, by tile parity
shared vec4 red4[KP > 1u ? NA : 1u];
shared float redl[KP > 1u ? NA : 1u];

void main() {
    const uint kvh = gl_WorkGroupID.x, s = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint kvd8 = pc.n_kv * R;  // uvec4s per cache row
    const uint group = pc.n_head / pc.n_kv;
    const uint g0 = gl_WorkGroupID.z * G;
    const uint ng = min(G, group - g0);
    const uint h0 = kvh * group + g0;  // first query head of this workgroup
    const uint n = state[S_POS] + 1u;  // positions 0..n-1 are attended to
    const uint chunk = pc.chunk != 0u ? pc.chunk : ((n + pc.n_split - 1u) / pc.n_split + 63u) / 64u * 64u;
    const uint b0 = min(s * chunk, n);
    const uint end = min(b0 + chunk, n);
    const uint begin = max(b0, pc.window > 0u && n > pc.window ? n - pc.window : 0u);
#ifdef ROPE
    // This split owns the new position n - 1 when its range ends there: keys below `cached`
    // come from the cache, that one from the QKV projection.
    const uint cached = begin < end && end == n ? n - 1u : end;
#endif

    // Lane numbering by subgroup, so the DS lanes of a score share a subgroup.
    const uint sg = gl_SubgroupSize;
    const uint vl = gl_SubgroupID * sg + gl_SubgroupInvocationID;
    const uint VW = gl_NumSubgroups * sg;

    for (uint i = tid; i < G * R; i += WG) {
        const uint g = i / R, u = i % R;
        vec4 lo = vec4(0.0), hi = vec4(0.0);
        if (g < ng) {
#ifdef ROPE
            // The query head rotated at the new position, as rope_kv.comp writes it.
            const uint hb = (h0 + g) * D, e = 8u * u, p = n - 1u;
            lo = vec4(rotated(hb, e, p), rotated(hb, e + 1u, p), rotated(hb, e + 2u, p),
                      rotated(hb, e + 3u, p)) * pc.scale;
            hi = vec4(rotated(hb, e + 4u, p), rotated(hb, e + 5u, p), rotated(hb, e + 6u, p),
                      rotated(hb, e + 7u, p)) * pc.scale;
#else
            const uint b = (h0 + g) * D + 8u * u;
            lo = vec4(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * pc.scale;
            hi = vec4(q[b + 4u], q[b + 5u], q[b + 6u], q[b + 7u]) * pc.scale;
#endif
        }
        QL[i] = lo;
        QH[i] = hi;
    }
    if (tid < G) {
        Mb[G + tid] = -1.0 / 0.0;  // parity 1: "before the first tile"
    }

    vec4 acc[NTA];
    float l[NTA];
    for (uint k = 0u; k < NTA; k++) {
        acc[k] = vec4(0.0);
        l[k] = 0.0;
    }
    uint cur = 1u;
    for (uint c0 = begin; c0 < end; c0 += BC) {
        const uint nc = min(BC, end - c0);
        cur ^= 1u;
        const uint prev = cur ^ 1u;
        barrier();  // the previous tile is no longer read (and the queries are staged)
        // 1. Stage the K and V tiles.
#ifdef ROPE
        // Keys before `cached` from the cache; the new one (the last of the owner's range, so
        // the last of its last tile) from the QKV projection, outside the loop: a branch all
        // lanes take or skip together, once a dispatch.
        const uint ncc = min(nc, cached - min(cached, c0));
#else
        const uint ncc = nc;
#endif
        for (uint i = tid; i < ncc * R; i += WG) {
            const uint c = i / R, u = i % R;
            const uint gi = (c0 + c) * kvd8 + kvh * R + u;
            Ks[i] = kc[gi];
            const uvec4 vw = vc[gi];
            Vs[2u * i] = vw.xy;
            Vs[2u * i + 1u] = vw.zw;
        }
#ifdef ROPE
        if (ncc < nc) {
            // The new position; the owner's first slice caches it.
            const uint p = n - 1u;
            const uint kb = pc.n_head * D + kvh * D, vb0 = kb + pc.n_kv * D;
            for (uint u = tid; u < R; u += WG) {
                const uint e = 8u * u, vb = vb0 + e, i = ncc * R + u;
                const uvec4 kw = uvec4(pack2(rotated(kb, e, p), rotated(kb, e + 1u, p)),
                                       pack2(rotated(kb, e + 2u, p), rotated(kb, e + 3u, p)),
                                       pack2(rotated(kb, e + 4u, p), rotated(kb, e + 5u, p)),
                                       pack2(rotated(kb, e + 6u, p), rotated(kb, e + 7u, p)));
                const uvec4 vw = uvec4(pack2(qkv[vb], qkv[vb + 1u]), pack2(qkv[vb + 2u], qkv[vb + 3u]),
                                       pack2(qkv[vb + 4u], qkv[vb + 5u]),
                                       pack2(qkv[vb + 6u], qkv[vb + 7u]));
                Ks[i] = kw;
                Vs[2u * i] = vw.xy;
                Vs[2u * i + 1u] = vw.zw;
                if (gl_WorkGroupID.z == 0u) {
                    const uint gi = p * kvd8 + kvh * R + u;
                    kc[gi] = kw;
                    vc[gi] = vw;
                }
            }
        }
#endif
        barrier();
        // 2. Scores, DS lanes each; the tile max per head by subgroup.
        for (uint t = vl; t < (G * BC * DS + VW - 1u) / VW * VW; t += VW) {
            const uint item = t / DS, dp = t % DS;
            const uint g = min(item / BC, G - 1u), c = item % BC;
            float sc = 0.0;
            for (uint i = 0u; i < RI; i++) {
                const uint u = dp + i * DS;
                if (u < R) {
                    const uvec4 kw = Ks[c * R + u];
                    const vec4 k0 = vec4(unpackHalf2x16(kw.x), unpackHalf2x16(kw.y));
                    const vec4 k1 = vec4(unpackHalf2x16(kw.z), unpackHalf2x16(kw.w));
                    sc += dot(QL[g * R + u], k0) + dot(QH[g * R + u], k1);
                }
            }
            for (uint x = 1u; x < DS; x <<= 1) {
                sc += subgroupShuffleXor(sc, x);
            }
            const bool live = item < G * BC && c < nc;
            const float mx = subgroupMax(live ? sc : -1.0 / 0.0);
            if (item < G * BC) {
                if (dp == 0u) {
                    SP[g * BC + c] = live ? sc : -1.0 / 0.0;
                }
                if (subgroupElect()) {
                    Msl[g * NSL + (t % (BC * DS)) / sg] = mx;
                }
            }
        }
        barrier();
        // 3. Probabilities against the new running max (written once per head for step 4).
        const uint nsl = BC * DS / sg;
        for (uint i = tid; i < G * BC; i += WG) {
            const uint g = i / BC;
            float m = Mb[prev * G + g];
            for (uint j = 0u; j < nsl; j++) {
                m = max(m, Msl[g * NSL + j]);
            }
            SP[i] = exp(SP[i] - m);
            if (i % BC == 0u) {
                Mb[cur * G + g] = m;
            }
        }
        barrier();
        // 4. Rescale and accumulate P V, 4 dimensions per task.
        for (uint k = 0u; k < NTA; k++) {
            const uint a = tid + k * WG;
            if (a < NA) {
                const uint j = a % D4, kp = (a / D4) % KP, g = a / (D4 * KP);
                const float alpha = exp(Mb[prev * G + g] - Mb[cur * G + g]);
                vec4 o4 = acc[k] * alpha;
                float lk = l[k] * alpha;
                for (uint c = kp; c < nc; c += KP) {
                    const float p = SP[g * BC + c];
                    const uvec2 vw = Vs[c * 2u * R + j];
                    o4 += p * vec4(unpackHalf2x16(vw.x), unpackHalf2x16(vw.y));
                    lk += p;
                }
                acc[k] = o4;
                l[k] = lk;
            }
        }
    }
    // The key phases' partial outputs and sums add up.
    if (KP > 1u) {
        barrier();
        for (uint k = 0u; k < NTA; k++) {
            const uint a = tid + k * WG;
            if (a < NA) {
                red4[a] = acc[k];
                redl[a] = l[k];
            }
        }
        barrier();
        for (uint k = 0u; k < NTA; k++) {
            const uint a = tid + k * WG;
            if (a < NA && (a / D4) % KP == 0u) {
                for (uint kp = 1u; kp < KP; kp++) {
                    acc[k] += red4[a + kp * D4];
                    l[k] += redl[a + kp * D4];
                }
            }
        }
    }
    barrier();  // Mb of the last tile is written
    for (uint k = 0u; k < NTA; k++) {
        const uint a = tid + k * WG;
        const uint j = a % D4, kp = (a / D4) % KP, g = a / (D4 * KP);
        if (a < NA && kp == 0u && g < ng) {
            const uint h = h0 + g;
            if (pc.n_split == 1u) {
                const vec4 r = acc[k] / l[k];
                const uint b = h * D + 4u * j;
                o[b] = r.x;
                o[b + 1u] = r.y;
                o[b + 2u] = r.z;
                o[b + 3u] = r.w;
            } else {
                const uint base = (h * pc.n_split + s) * (D + 2u);
                if (j == 0u) {
                    part[base] = Mb[cur * G + g];
                    part[base + 1u] = l[k];
                }
                const uint b = base + 2u + 4u * j;
                part[b] = acc[k].x;
                part[b + 1u] = acc[k].y;
                part[b + 2u] = acc[k].z;
                part[b + 3u] = acc[k].w;
            }
        }
    }
}
