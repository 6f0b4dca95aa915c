#version 450
// Start of a prompt batch of n_tok tokens: pos = n_past, n_past += n_tok, and the tokens from
// index hist_from on go into the repetition-penalty history ring (a token the sampler chose is
// already there). When decoding, embed.comp and sample.comp do this bookkeeping.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer Tokens { uint tokens[]; };
layout(push_constant) uniform PC { uint n_tok; uint hist_from; } pc;
#include "common/state.glsl"

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint nh = state[S_NHIST];
    const uint np = state[S_NPAST];
    const uint n_new = pc.n_tok - min(pc.hist_from, pc.n_tok);
    const uint first = n_new > HIST ? n_new - HIST : 0u;
    for (uint i = first + tid; i < n_new; i += 64u) {
        state[S_HIST + (nh + i) % HIST] = tokens[pc.hist_from + i];
    }
    barrier();
    if (tid == 0u) {
        state[S_POS] = np;
        state[S_NPAST] = np + pc.n_tok;
        state[S_NHIST] = nh + n_new;
    }
}
