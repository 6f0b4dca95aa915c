#version 450
// Embedding lookup: x[t] = token_embd[token_t], dequantized. The token comes from the device
// state (decoding: the id the sampler wrote last step; this dispatch then also starts the step's
// position bookkeeping: pos = n_past, n_past += 1) or from a token buffer (prompt processing).
// The table may be split into pieces of whole rows (bindings larger than
// maxStorageBufferRange are not allowed); seg_rows gives each piece's row count.
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;
// The table's weight type (ggml id, `Kernels::embed`): a constant, so the pipeline holds its
// dequantizer only (lavapipe compiles every case of a switch on a run-time type).
layout(constant_id = 1) const uint TY = 0;
#define MAX_SEG 4
layout(set = 0, binding = 0) buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer Tokens { uint tokens[]; };
layout(set = 0, binding = 2) readonly buffer Wt { uint d[]; } W[MAX_SEG];
layout(set = 0, binding = 3) writeonly buffer Out { float x[]; };
layout(push_constant) uniform PC {
    uint dim;
    uint from_state;  // 1: token = state[S_TOKEN]; 0: token = tokens[t]
    uint ty;  // the same type as TY (unused here)
    uint nseg;
    uvec4 seg_rows;
    float scale;  // factor on every element (gemma3: sqrt(dim); else 1)
} pc;
#define WLOAD(s, i) W[s].d[i]
#include "common/dequant.glsl"
#include "common/state.glsl"

void main() {
    const uint t = gl_WorkGroupID.x;
    uint tok = pc.from_state != 0u ? state[S_TOKEN] : tokens[t];
    if (pc.from_state != 0u && gl_LocalInvocationID.x == 0u) {
        // Only position words are written; every invocation reads only S_TOKEN.
        const uint np = state[S_NPAST];
        state[S_POS] = np;
        state[S_NPAST] = np + 1u;
    }
    uint seg = 0u;
    while (seg + 1u < pc.nseg && tok >= pc.seg_rows[seg]) {
        tok -= pc.seg_rows[seg];
        seg++;
    }
    if (tok >= pc.seg_rows[seg]) {
        tok = 0u; // out of range: the host validates ids, this only keeps reads in bounds
    }
    const uint rb = tok * row_bytes(TY, pc.dim);
    const uint units = (pc.dim + 31u) / 32u;
    for (uint u = gl_LocalInvocationID.x; u < units; u += WG) {
        float v[32];
        dq32(seg, TY, rb, u, pc.dim, v);
        for (uint i = 0u; i < 32u && u * 32u + i < pc.dim; i++) {
            x[t * pc.dim + u * 32u + i] = v[i] * pc.scale;
        }
    }
}
