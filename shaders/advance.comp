#version 450
// Start of a prompt batch of n_tok tokens: pos = n_past, n_past += n_tok, and the tokens go into
// the repetition-penalty history ring. (When decoding, sample.comp does the same for its token.)
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer Tokens { uint tokens[]; };
layout(push_constant) uniform PC { uint n_tok; } pc;
#include "common/state.glsl"

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint nh = state[S_NHIST];
    const uint np = state[S_NPAST];
    const uint first = pc.n_tok > HIST ? pc.n_tok - HIST : 0u;
    for (uint i = first + tid; i < pc.n_tok; i += 64u) {
        state[S_HIST + (nh + i) % HIST] = tokens[i];
    }
    barrier();
    if (tid == 0u) {
        state[S_POS] = np;
        state[S_NPAST] = np + pc.n_tok;
        state[S_NHIST] = nh + pc.n_tok;
    }
}
