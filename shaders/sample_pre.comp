#version 450
// The sampler's first stage (the prefilter), one workgroup per SLICE tokens of the vocabulary
// (common/candidates.glsl): applies the repetition penalty to its slice's logits exactly as the
// one-workgroup sampler did (once to each distinct token among the last `last_n`), flags NaN or
// infinite logits, and keeps the slice's candidates for sample.comp: greedy its best (logit
// desc, id asc), top-k (k <= K_MAX) its top k in that order, otherwise the whole slice. The
// candidates' penalized logits go to `sc`, their ids to `ids`, both at slice * k in id order;
// the slice's NaN/infinity bits to ids[n_vocab + slice].
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 128;
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(set = 0, binding = 1) readonly buffer State { uint state[]; };
layout(set = 0, binding = 2) writeonly buffer Scratch { float sc[]; };
layout(set = 0, binding = 3) writeonly buffer Ids { uint ids[]; };
layout(set = 0, binding = 4) readonly buffer Params {
    float temp;
    uint top_k;
    float top_p;
    float min_p;
    float penalty;
    uint last_n;
    float u;
    uint pad_;
} prm;
layout(push_constant) uniform PC {
    uint n_vocab;
    uint logits_off;
} pc;
#include "common/state.glsl"
#include "common/candidates.glsl"

// The slice's penalized logits; sort keys and local ids; penalized-token bits; reduction.
shared float sv[SLICE];
shared uint sk[SLICE];
shared uint si[SLICE];
shared uint s_pen[SLICE / 32u];
shared float rv[WG];
shared uint ri[WG];
shared uint s_bad;

const uint NONE = 0xFFFFFFFFu;

// Order-preserving map of a float to a uint (as sample.comp's okey).
uint okey(float f) {
    uint b = floatBitsToUint(f);
    return (b & 0x80000000u) != 0u ? ~b : b | 0x80000000u;
}

// Whether (key a, id ia) comes before (key b, id ib) in the order (logit desc, id asc).
bool before(uint a, uint ia, uint b, uint ib) {
    return a > b || (a == b && ia < ib);
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint slice = gl_WorkGroupID.x;
    const uint n = pc.n_vocab;
    const uint base = slice * SLICE;
    const uint len = min(SLICE, n - base);
    const uint k = cand_per_slice(prm.temp, prm.top_k, n);

    if (tid == 0u) {
        s_bad = 0u;
    }
    for (uint w = tid; w < SLICE / 32u; w += WG) {
        s_pen[w] = 0u;
    }
    barrier();
    // The distinct tokens among the last `last_n` that fall in this slice, marked once each.
    const uint nh = state[S_NHIST];
    const uint last_n = min(min(prm.last_n, nh), HIST);
    if (prm.penalty != 1.0) {
        for (uint j = tid; j < last_n; j += WG) {
            const uint tok = state[S_HIST + (nh - 1u - j) % HIST];
            if (tok >= base && tok - base < len) {
                const uint o = tok - base;
                atomicOr(s_pen[o / 32u], 1u << (o % 32u));
            }
        }
    }
    barrier();
    uint bad = 0u;
    for (uint i = tid; i < len; i += WG) {
        float v = logits[pc.logits_off + base + i];
        bad |= isnan(v) ? 1u : (isinf(v) ? 2u : 0u);
        if (((s_pen[i / 32u] >> (i % 32u)) & 1u) != 0u) {
            v = v > 0.0 ? v / prm.penalty : v * prm.penalty;
        }
        sv[i] = v;
    }
    if (bad != 0u) {
        atomicOr(s_bad, bad);
    }
    barrier();
    if (tid == 0u) {
        ids[n + slice] = s_bad;
    }
    const uint out0 = slice * k;

    if (k >= SLICE) {
        // The whole slice (out0 = base).
        for (uint i = tid; i < len; i += WG) {
            sc[base + i] = sv[i];
            ids[base + i] = base + i;
        }
        return;
    }

    if (k == 1u) {
        // The slice's best: highest logit, lowest id on ties (as the one-workgroup argmax).
        float bv = -1.0 / 0.0;
        uint bi = NONE;
        for (uint i = tid; i < len; i += WG) {
            float v = sv[i];
            if (v > bv || bi == NONE) {
                bv = v;
                bi = i;
            }
        }
        rv[tid] = bv;
        ri[tid] = bi;
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) {
                float ov = rv[tid + st];
                uint oi = ri[tid + st];
                if (oi != NONE && (ri[tid] == NONE || ov > rv[tid] || (ov == rv[tid] && oi < ri[tid]))) {
                    rv[tid] = ov;
                    ri[tid] = oi;
                }
            }
            barrier();
        }
        if (tid == 0u) {
            sc[out0] = rv[0];
            ids[out0] = base + ri[0];
        }
        return;
    }

    // Top k: a bitonic sort of the slice in the order (logit desc, id asc); positions past the
    // slice's end sort last.
    for (uint i = tid; i < SLICE; i += WG) {
        sk[i] = i < len ? okey(sv[i]) : 0u;
        si[i] = i < len ? i : NONE;
    }
    barrier();
    for (uint size = 2u; size <= SLICE; size <<= 1) {
        for (uint stride = size / 2u; stride > 0u; stride >>= 1) {
            for (uint t = tid; t < SLICE / 2u; t += WG) {
                const uint i = 2u * t - (t & (stride - 1u));
                const uint j = i + stride;
                const uint ka = sk[i], ia = si[i], kb = sk[j], ib = si[j];
                // Blocks with bit `size` clear end up in order, the others reversed, so each
                // pair of blocks merges as a bitonic sequence; at size = SLICE all in order.
                const bool fwd = (i & size) == 0u;
                if (fwd ? before(kb, ib, ka, ia) : before(ka, ia, kb, ib)) {
                    sk[i] = kb;
                    si[i] = ib;
                    sk[j] = ka;
                    si[j] = ia;
                }
            }
            barrier();
        }
    }
    // The first kk positions hold the slice's top k; each is written at its rank in id order.
    const uint kk = min(k, len);
    for (uint t = tid; t < kk; t += WG) {
        const uint me = si[t];
        uint r = 0u;
        for (uint q = 0u; q < kk; q++) {
            r += si[q] < me ? 1u : 0u;
        }
        sc[out0 + r] = sv[me];
        ids[out0 + r] = base + me;
    }
}
