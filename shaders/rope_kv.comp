#version 450
// RoPE on Q and K, and the write of K and V into the f16 KV cache at the current position.
// Input: the fused QKV projection, per token [q (n_head*D) | k (n_kv*D) | v (n_kv*D)].
// Output: rotated q (f32, for attention) and K/V rows of the cache, two f16 per uint.
// Each invocation produces two adjacent output elements, so a packed f16 pair is written by one
// invocation only. Styles: common/rope.glsl. Position of token t = state[S_POS] + t.
// Decoding on CPU implementations folds this into attention.comp's ROPE variant.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer State { uint state[]; };
layout(set = 0, binding = 1) readonly buffer QKV { float qkv[]; };
layout(set = 0, binding = 2) writeonly buffer Q { float q[]; };
layout(set = 0, binding = 3) writeonly buffer KC { uint kc[]; };
layout(set = 0, binding = 4) writeonly buffer VC { uint vc[]; };
// Per rotated pair j (common/rope.glsl).
layout(set = 0, binding = 5) readonly buffer Freq { float inv_freq[]; };
layout(push_constant) uniform PC {
    uint q_dim;     // n_head * D
    uint kv_dim;    // n_kv * D
    uint head_dim;  // D
    uint n_rot;     // rotated dimensions per head (<= D)
    uint n_tok;
    uint neox;
} pc;
#include "common/state.glsl"

#include "common/rope.glsl"

float rotated(uint hb, uint i, uint p) {
    return rope_rotated(hb, i, p, pc.n_rot, pc.neox != 0u);
}

void main() {
    const uint item = gl_GlobalInvocationID.x;
    const uint t = gl_GlobalInvocationID.y;
    const uint qp = pc.q_dim / 2u, kp = pc.kv_dim / 2u;
    if (item >= qp + 2u * kp || t >= pc.n_tok) {
        return;
    }
    const uint p = state[S_POS] + t;
    const uint stride = pc.q_dim + 2u * pc.kv_dim;
    const uint D = pc.head_dim;
    if (item < qp) {
        uint e = 2u * item;
        uint hb = t * stride + (e / D) * D;
        uint i = e % D;
        q[t * pc.q_dim + e] = rotated(hb, i, p);
        q[t * pc.q_dim + e + 1u] = rotated(hb, i + 1u, p);
    } else if (item < qp + kp) {
        uint e = 2u * (item - qp);
        uint hb = t * stride + pc.q_dim + (e / D) * D;
        uint i = e % D;
        vec2 v = vec2(rotated(hb, i, p), rotated(hb, i + 1u, p));
        kc[(p * pc.kv_dim + e) / 2u] = packHalf2x16(v);
    } else {
        uint e = 2u * (item - qp - kp);
        uint b = t * stride + pc.q_dim + pc.kv_dim + e;
        vc[(p * pc.kv_dim + e) / 2u] = packHalf2x16(vec2(qkv[b], qkv[b + 1u]));
    }
}
