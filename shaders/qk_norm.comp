#version 450
// Per-head RMS norm of Q and K in place, before RoPE (qwen3, gemma3): each head of D values is
// scaled by 1/rms and multiplied by the norm weight of its kind (one weight vector of D for all
// query heads, one for all key heads). Input: the fused QKV projection, per token
// [q (n_head*D) | k (n_kv*D) | v (n_kv*D)]; V is not touched.
// Grid: (n_head + n_kv, n_tok), one workgroup per head and token.
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer QKV { float qkv[]; };
layout(set = 0, binding = 1) readonly buffer WQ { float wq[]; };
layout(set = 0, binding = 2) readonly buffer WK { float wk[]; };
layout(push_constant) uniform PC {
    uint q_dim;     // n_head * D
    uint kv_dim;    // n_kv * D
    uint head_dim;  // D
    uint n_tok;
    float eps;
} pc;

shared float red[64];

void main() {
    const uint hh = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint D = pc.head_dim;
    // K heads follow the Q heads directly, so head hh starts at hh * D in either case.
    const uint base = t * (pc.q_dim + 2u * pc.kv_dim) + hh * D;
    float ss = 0.0;
    for (uint i = tid; i < D; i += 64u) {
        const float v = qkv[base + i];
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
    const float sc = inversesqrt(red[0] / float(D) + pc.eps);
    const bool is_q = hh * D < pc.q_dim;
    for (uint i = tid; i < D; i += 64u) {
        qkv[base + i] = (qkv[base + i] * sc) * (is_q ? wq[i] : wk[i]);
    }
}
