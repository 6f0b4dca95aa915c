#version 450
// Merges the splits of attention_split.comp for one query head: with M the largest split max,
// out = sum_s o_s exp(m_s - M) / sum_s l_s exp(m_s - M). Splits past the current position hold
// m = -inf, l = 0 and add nothing. Grid: (n_head, n_tok): one token when decoding, the batch's
// tokens after the split prompt attention (attention_prompt.comp); the partials are
// [token][head][split][m, l, D outputs].
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 4) writeonly buffer Out { float o[]; };
layout(set = 0, binding = 5) readonly buffer Part { float part[]; };
layout(push_constant) uniform PC {
    uint n_head;
    uint n_kv;
    uint head_dim;
    uint n_tok;
    float scale;
    uint n_split;
    uint chunk;
    uint window;  // > 0: sliding window, the query at p sees keys p - window + 1 ..= p
} pc;

void main() {
    const uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint D = pc.head_dim, stride = D + 2u;
    const uint row = t * pc.n_head + h;
    const uint base = row * pc.n_split * stride;
    // Every invocation finds M and L itself: n_split reads, no barrier.
    float mx = -1.0 / 0.0;
    for (uint s = 0u; s < pc.n_split; s++) {
        mx = max(mx, part[base + s * stride]);
    }
    float l = 0.0;
    for (uint s = 0u; s < pc.n_split; s++) {
        l += part[base + s * stride + 1u] * exp(part[base + s * stride] - mx);
    }
    for (uint d = tid; d < D; d += WG) {
        float a = 0.0;
        for (uint s = 0u; s < pc.n_split; s++) {
            a += part[base + s * stride + 2u + d] * exp(part[base + s * stride] - mx);
        }
        o[row * D + d] = a / l;
    }
}
