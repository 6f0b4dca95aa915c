#version 450
// An empty stage for the profiler's calibration (src/engine/vulkan/profile.rs): one workgroup,
// no work; its mean time between barriers is the per-stage floor every op pays. The store never
// happens; it keeps the binding in the interface.
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Sink { uint sink[]; };

void main() {
    if (gl_GlobalInvocationID.x == 0xffffffffu) {
        sink[0] = 1u;
    }
}
