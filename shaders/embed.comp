#version 450
// Embedding lookup: x[t] = token_embd[token_t], dequantized. The token comes from the device
// state (decoding: the id the sampler wrote last step; this dispatch then also starts the step's
// position bookkeeping: pos = n_past, n_past += 1) or from a token buffer (a prompt batch of
// n_tok tokens, a workgroup each; the dispatch then also starts the batch: pos = n_past,
// n_past += n_tok, and the tokens from index hist_from on go into the repetition-penalty
// history ring, a token the sampler chose being there already). A prompt batch is recorded for
// its tokens, so it takes n_past and the ring's count from the host (which keeps both as the
// device does): no workgroup reads the words another writes, and no barrier is needed.
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
    uint hist_from;  // a prompt batch's first token that goes into the history
    uint nseg;
    uvec4 seg_rows;
    float scale;  // factor on every element (gemma3: sqrt(dim); else 1)
    uint n_past;  // a prompt batch: state[S_NPAST] before it
    uint n_hist;  // a prompt batch: state[S_NHIST] before it
} pc;
#define WLOAD(s, i) W[s].d[i]
#include "common/dequant.glsl"
#include "common/state.glsl"

void main() {
    const uint t = gl_WorkGroupID.x;
    uint tok = pc.from_state != 0u ? state[S_TOKEN] : tokens[t];
    if (pc.from_state != 0u) {
        if (gl_LocalInvocationID.x == 0u) {
            // Only position words are written; every invocation reads only S_TOKEN.
            const uint np = state[S_NPAST];
            state[S_POS] = np;
            state[S_NPAST] = np + 1u;
        }
    } else if (gl_LocalInvocationID.x == 0u) {
        // The batch's last HIST tokens from hist_from on, each by its own workgroup.
        const uint n_tok = gl_NumWorkGroups.x;
        const uint n_new = n_tok - min(pc.hist_from, n_tok);
        if (t >= pc.hist_from && t + HIST >= n_tok) {
            state[S_HIST + (pc.n_hist + t - pc.hist_from) % HIST] = tok;
        }
        if (t == 0u) {
            state[S_POS] = pc.n_past;
            state[S_NPAST] = pc.n_past + n_tok;
            state[S_NHIST] = pc.n_hist + n_new;
        }
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
