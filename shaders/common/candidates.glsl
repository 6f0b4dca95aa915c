// The sampler's candidates, shared by sample_pre.comp (which keeps them) and sample.comp (which
// chooses among them), with src/engine/vulkan/kernels.rs (SAMPLE_SLICE, SAMPLE_K_MAX).
// The vocabulary is cut into slices of SLICE tokens, one prefilter workgroup each. Every slice
// keeps the same number k of candidates (the last slice min(k, its length)), written at
// slice * k in id order, so the candidates' index order is their id order and every tie the
// selection breaks by index is broken by id, as over the whole vocabulary.
#define SLICE 1024u
#define K_MAX 128u

// Candidates per slice for these parameters: 1 for greedy (the slice's best), top_k where
// 1 <= top_k <= K_MAX and top_k < n (the global top-k is among the slices' top-k), else the
// whole slice (top-p / min-p over the whole vocabulary: nothing can be dropped exactly).
uint cand_per_slice(float temp, uint top_k, uint n) {
    if (temp <= 0.0) {
        return 1u;
    }
    if (top_k > 0u && top_k < n && top_k <= K_MAX) {
        return top_k;
    }
    return SLICE;
}

uint n_slices(uint n) {
    return (n + SLICE - 1u) / SLICE;
}

// Candidates in all (n >= 1): k from every slice but the last, which keeps min(k, its length).
// With k = SLICE that is n.
uint cand_count(uint n, uint k) {
    const uint last = n_slices(n) - 1u;
    return last * k + min(k, n - last * SLICE);
}
