// Workgroup tree reduction of V values per invocation through shared memory. Portable: no
// assumption about the subgroup size (lavapipe has 8, NVIDIA 32, AMD 64). WG must be a power of
// two; the includer declares `shared float red[V_MAX * WG]`.

// Sums red[v * WG + i] over i for every v < nv; the result is left in red[v * WG].
void reduce_sum(uint tid, uint nv) {
    barrier();
    for (uint st = WG / 2u; st > 0u; st >>= 1) {
        if (tid < st) {
            for (uint v = 0u; v < nv; v++) {
                red[v * WG + tid] += red[v * WG + tid + st];
            }
        }
        barrier();
    }
}
