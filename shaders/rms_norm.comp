#version 450
// RMSNorm as its own pass (PIGPU_VK_NORM=pass; docs/vulkan.md, "RMSNorm once per token"):
//   y[r] = x[r] * w * inversesqrt(mean(x[r]^2) + eps)
// for each row r of n floats, rows `stride` floats apart, both buffers from float `off` on. The
// products after it read y without their fused norm, so x and w are read once per row here,
// not once per workgroup of every norm-fused mat-vec.
// Grid: (n_tok), one workgroup per row. Reduction: subgroupAdd and one shared slot per subgroup
// with -DSUBGROUP (devices with subgroup arithmetic), else a shared-memory tree.
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// A power of two.
layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };
layout(set = 0, binding = 1) readonly buffer W4 { vec4 w4[]; };
layout(set = 0, binding = 2) writeonly buffer Y { float y[]; };
layout(set = 0, binding = 2) writeonly buffer Y4 { vec4 y4[]; };
layout(push_constant) uniform PC {
    uint n;
    uint n_tok;
    float eps;
    uint stride;
    uint off;
} pc;

// Per subgroup (SUBGROUP) or per invocation (the tree).
shared float red[WG];

void main() {
    const uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    if (t >= pc.n_tok) {
        return;
    }
    const uint base = pc.off + t * pc.stride;
    // Whole vec4s where the row starts on one and has a multiple of 4 floats.
    const bool v4 = ((base | pc.n) & 3u) == 0u;
    float ss = 0.0;
    if (v4) {
        for (uint i = tid; i < pc.n / 4u; i += WG) {
            const vec4 v = x4[(base >> 2) + i];
            ss += dot(v, v);
        }
    } else {
        for (uint i = tid; i < pc.n; i += WG) {
            const float v = x[base + i];
            ss += v * v;
        }
    }
#ifdef SUBGROUP
    ss = subgroupAdd(ss);
    if (subgroupElect()) {
        red[gl_SubgroupID] = ss;
    }
    barrier();
    float total = 0.0;
    for (uint s = 0u; s < gl_NumSubgroups; s++) {
        total += red[s];
    }
#else
    red[tid] = ss;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        barrier();
    }
    const float total = red[0];
#endif
    const float sc = inversesqrt(total / float(pc.n) + pc.eps);
    if (v4) {
        for (uint i = tid; i < pc.n / 4u; i += WG) {
            y4[(base >> 2) + i] = (x4[(base >> 2) + i] * sc) * w4[i];
        }
    } else {
        for (uint i = tid; i < pc.n; i += WG) {
            y[base + i] = (x[base + i] * sc) * w[i];
        }
    }
}
