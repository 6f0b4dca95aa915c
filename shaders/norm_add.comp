#version 450
// Residual add through a norm (gemma3's post-attention and post-FFN norms):
// x[t] += rms_norm(y[t]) * w, for each token row t of width n.
// Grid: (n_tok), one workgroup per token.
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer Y { float y[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };
layout(set = 0, binding = 2) buffer X { float x[]; };
layout(push_constant) uniform PC {
    uint n;
    uint n_tok;
    float eps;
} pc;

shared float red[64];

void main() {
    const uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    const uint base = t * pc.n;
    float ss = 0.0;
    for (uint i = tid; i < pc.n; i += 64u) {
        const float v = y[base + i];
        ss += v * v;
    }
    red[tid] = ss;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        barrier();
    }
    const float sc = inversesqrt(red[0] / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += 64u) {
        x[base + i] += (y[base + i] * sc) * w[i];
    }
}
