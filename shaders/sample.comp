#version 450
// The sampler's second stage, in one workgroup, over the candidates sample_pre.comp kept (its
// penalized logits in `sc`, their ids in `ids`, in id order: common/candidates.glsl), so only
// the chosen token id ever leaves the device. With ONE_STAGE (the path CPU implementations take:
// docs/vulkan.md "Sampling on the GPU") it is the whole sampler instead: it reads the logits
// itself, applies the penalty and flags NaN/inf on the way, and its candidates are the whole
// vocabulary (candidate i is token i); sample_pre.comp is not run. Semantics (mirrored by the
// CPU reference in src/engine/vulkan/tests): repetition penalty on the distinct tokens among the
// last `last_n` of the history (applied by the prefilter) -> greedy argmax (ties: lowest id)
// when temp <= 0; otherwise top-k (order: logit desc, id asc) -> w = exp((l - max) / temp) ->
// top-p (smallest prefix whose mass >= top_p * total) -> min-p (w >= min_p; the top w is 1) ->
// draw: the first token in that order whose cumulative mass exceeds u * total.
// Thresholds are found without sorting by a 4-bit radix search (8 passes) over the float bits of
// the keys, counting candidates (top-k) or summing their mass (top-p, draw); ties at the
// threshold are resolved in index order, which is id order. The token is written to the state
// (where the next step's embedding lookup reads it) and appended to the history. A logit that
// is NaN or infinite (broken weights; flagged per slice by the prefilter, or here with
// ONE_STAGE) sets the state's S_BAD word, which the host reads back beside the token, and the
// token is then 0 (an id the next step can embed). The verdict costs no pass or barrier of its
// own: it is reduced in the tree of the first pass every path makes (greedy's argmax, or the
// maximum for the softmax), and the cuts of top-k and top-p and min-p ride the passes after
// them (reduce_best, main).
#extension GL_GOOGLE_include_directive : require
layout(constant_id = 0) const uint WG = 128;
// 1: the one-stage sampler over the logits (no prefilter); 0: the selection after sample_pre.
layout(constant_id = 1) const uint ONE_STAGE = 0;
// 1: greedy only (the pipeline the host records when the temperature is <= 0: kernels.rs
// `Kernels::sample`): the argmax and nothing else is compiled, and the shared memory is the
// argmax tree's; 0: every sampler, greedy included (the temperature read at run time).
layout(constant_id = 2) const uint GREEDY = 0;
// 1: top-k-bounded sampling only (the pipeline the host records when the temperature is > 0
// and 1 <= top_k <= WG: kernels.rs `sample_mode`, the chat defaults' family): the top-k list
// is built in shared memory from two reads of the candidates (`topk_main`), and neither the
// radix searches nor the other narrowings are compiled; 0: as GREEDY says.
layout(constant_id = 3) const uint TOPK = 0;
layout(local_size_x_id = 0) in;
// Binding 0 (the logits) is read by the prefilter, or here with ONE_STAGE; binding 3 holds the
// prefilter's candidate ids and flags (two stages) and, past them, the narrowed list (both
// paths: `narrow`). Both stages share one descriptor set.
layout(set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(set = 0, binding = 1) coherent buffer State { uint state[]; };
layout(set = 0, binding = 2) coherent buffer Scratch { float sc[]; };
layout(set = 0, binding = 3) coherent buffer Ids { uint ids[]; };
layout(set = 0, binding = 4) readonly buffer Params {
    float temp;
    uint top_k;
    float top_p;
    float min_p;
    float penalty;
    uint last_n;
    float u;
    uint pad_;
} prm;
layout(push_constant) uniform PC {
    uint n_vocab;
    uint logits_off;
} pc;
#include "common/state.glsl"
#include "common/candidates.glsl"

// The radix search's 16 bins per invocation; greedy's tree and the top-k-bounded selection
// need 2 words per invocation.
const uint BINS = (GREEDY != 0u || TOPK != 0u) ? 2u : 16u;
shared float hm[BINS * WG];
shared uint hc[BINS * WG];
shared uint s_key, s_cut, s_cnt_eq, s_above_c, s_count;
shared float s_above_m, s_kth;
// Each invocation's maximum of the first pass (the top-k bound: kth_max; unused by greedy).
shared float s_imax[WG - (WG - 1u) * GREEDY];
// The top-k-bounded selection's list (TOPK): candidate indices and their penalized logits,
// appended in any order (s_count counts them); its row maximum and verdict.
const uint LIST = TOPK != 0u ? WG : 1u;
shared uint l_idx[LIST];
shared float l_val[LIST];
shared float s_max;
shared uint s_bad;
// Candidates: with one stage the whole vocabulary, read from the push constant (which the
// compiler sees as uniform, unlike a variable), else set at the start of main.
uint n_cand_two;
uint n_cand() {
    return ONE_STAGE != 0u ? pc.n_vocab : n_cand_two;
}

// The elements the selection's passes run over: the candidates 0 .. n_sel - 1, or after
// `narrow` the n_sel candidates listed (in index order) at ids[list0() + j]. Uniform.
uint n_sel;
bool narrowed = false;
uint list0() {
    return pc.n_vocab + n_slices(pc.n_vocab);
}
// The candidate index of element j.
uint at(uint j) {
    return narrowed ? ids[list0() + j] : j;
}

// Order-preserving map of a float to a uint (for logits, which may be negative).
uint okey(float f) {
    uint b = floatBitsToUint(f);
    return (b & 0x80000000u) != 0u ? ~b : b | 0x80000000u;
}

// Element j (of the n_sel): by_mass: elements are w = sc[i] > 0 with key = bits(w); else all
// logits with key = okey(sc[i]); i its candidate index.
bool elem(bool by_mass, uint j, out uint key, out float w) {
    float v = sc[at(j)];
    if (by_mass) {
        key = floatBitsToUint(v);
        w = v;
        return v > 0.0;
    }
    key = okey(v);
    w = 0.0;
    return true;
}

void sync() {
    memoryBarrierBuffer();
    memoryBarrierShared();
    barrier();
}

// Sums each invocation's 16 bins of mass `m` and count `c` over the workgroup: the totals in
// hm[b * WG] and hc[b * WG] (the radix search's pass, the nucleus bound's bins).
void bins_tree(uint tid, float m[16], uint c[16]) {
    for (uint b = 0u; b < 16u; b++) {
        hm[b * WG + tid] = m[b];
        hc[b * WG + tid] = c[b];
    }
    sync();
    for (uint st = WG / 2u; st > 0u; st >>= 1) {
        if (tid < st) {
            for (uint b = 0u; b < 16u; b++) {
                hm[b * WG + tid] += hm[b * WG + tid + st];
                hc[b * WG + tid] += hc[b * WG + tid + st];
            }
        }
        sync();
    }
}

// Radix search for the threshold key T in the order "key desc": the key of the element at which
// the running count reaches `tcount` (count mode) or the running mass reaches (`strict`: exceeds)
// `tmass`. Leaves T in s_key, the count/mass of elements above T in s_above_c/s_above_m and the
// number of elements equal to T in s_cnt_eq.
void search(bool by_mass, uint tcount, float tmass, bool strict) {
    const uint tid = gl_LocalInvocationID.x;
    const uint n = n_sel;
    uint prefix = 0u;
    for (uint pass_ = 0u; pass_ < 8u; pass_++) {
        const uint shift = 28u - 4u * pass_;
        float m[16];
        uint c[16];
        for (uint b = 0u; b < 16u; b++) {
            m[b] = 0.0;
            c[b] = 0u;
        }
        for (uint i = tid; i < n; i += WG) {
            uint key;
            float w;
            if (!elem(by_mass, i, key, w)) {
                continue;
            }
            if (pass_ == 0u || (key >> (shift + 4u)) == (prefix >> (shift + 4u))) {
                uint b = (key >> shift) & 0xFu;
                m[b] += w;
                c[b] += 1u;
            }
        }
        bins_tree(tid, m, c);
        if (tid == 0u) {
            float am = pass_ == 0u ? 0.0 : s_above_m;
            uint ac = pass_ == 0u ? 0u : s_above_c;
            int sel = -1, last = -1;
            float last_am = am;
            uint last_ac = ac;
            for (int b = 15; b >= 0; b--) {
                uint cb = hc[uint(b) * WG];
                if (cb == 0u) {
                    continue;
                }
                float nm = am + hm[uint(b) * WG];
                uint nc = ac + cb;
                bool crossed = by_mass ? (strict ? nm > tmass : nm >= tmass) : nc >= tcount;
                last = b;
                last_am = am;
                last_ac = ac;
                if (crossed) {
                    sel = b;
                    break;
                }
                am = nm;
                ac = nc;
            }
            if (sel < 0) {
                // Rounding put the target past the total: take the last element in order.
                sel = last;
                am = last_am;
                ac = last_ac;
            }
            s_above_m = am;
            s_above_c = ac;
            s_cnt_eq = hc[uint(max(sel, 0)) * WG];
            s_key = prefix | (uint(max(sel, 0)) << shift);
        }
        sync();
        prefix = s_key;
        sync();
    }
}

// The r-th (0-based) element, in index order (= id order), whose key equals s_key: its index
// among the n_sel in s_cut.
void nth_equal(bool by_mass, uint r) {
    const uint tid = gl_LocalInvocationID.x;
    const uint n = n_sel;
    const uint T = s_key;
    const uint chunk = (n + WG - 1u) / WG;
    const uint lo = min(tid * chunk, n), hi = min(lo + chunk, n);
    uint cnt = 0u;
    for (uint i = lo; i < hi; i++) {
        uint key;
        float w;
        if (elem(by_mass, i, key, w) && key == T) {
            cnt++;
        }
    }
    hc[tid] = cnt;
    sync();
    if (tid == 0u) {
        uint run = 0u;
        for (uint i = 0u; i < WG; i++) {
            uint c = hc[i];
            hc[i] = run;
            run += c;
        }
    }
    sync();
    uint base = hc[tid];
    if (r >= base && r < base + cnt) {
        uint seen = base;
        for (uint i = lo; i < hi; i++) {
            uint key;
            float w;
            if (elem(by_mass, i, key, w) && key == T) {
                if (seen == r) {
                    s_cut = i;
                    break;
                }
                seen++;
            }
        }
    }
    sync();
}

float reduce_f(float v, bool is_max) {
    const uint tid = gl_LocalInvocationID.x;
    hm[tid] = v;
    sync();
    for (uint st = WG / 2u; st > 0u; st >>= 1) {
        if (tid < st) {
            hm[tid] = is_max ? max(hm[tid], hm[tid + st]) : hm[tid] + hm[tid + st];
        }
        sync();
    }
    float r = hm[0];
    sync();
    return r;
}

// The token of candidate i.
uint cand_id(uint i) {
    return ONE_STAGE != 0u ? i : ids[i];
}

// Writes the chosen token (0 with a bad verdict) and the verdict to the state and appends the
// token to the history (invocation 0 only).
void finish(uint tid, uint token, uint verdict, uint nh) {
    if (tid == 0u) {
        if (verdict != 0u) {
            token = 0u;
        }
        state[S_BAD] = verdict;
        state[S_TOKEN] = token;
        state[S_HIST + nh % HIST] = token;
        state[S_NHIST] = nh + 1u;
    }
}

// NaN/inf flags of a logit: bit 0 NaN, bit 1 infinite (the S_BAD word's bits).
uint bad_bits(float v) {
    return isnan(v) ? 1u : (isinf(v) ? 2u : 0u);
}

// The repetition penalty of one logit.
float penalize(float v) {
    return v > 0.0 ? v / prm.penalty : v * prm.penalty;
}

// One stage applies the repetition penalty while it reads the logits, without a pass or a
// barrier of its own: invocation `tid` reads tokens tid, tid + WG, ..., and this is the smallest
// token >= lo in that class (token % WG == tid) among the last `last_n` of the history (below
// n), or none (0xFFFFFFFF, which no index reaches). Asking again past it steps through the
// class's distinct history tokens in order, so each is penalized once however often it occurs.
uint pen_next(uint tid, uint nh, uint last_n, uint lo, uint n) {
    uint best = 0xFFFFFFFFu;
    for (uint j = 0u; j < last_n; j++) {
        const uint tok = state[S_HIST + (nh - 1u - j) % HIST];
        if (tok % WG == tid && tok >= lo && tok < n && tok < best) {
            best = tok;
        }
    }
    return best;
}

// The history entries the penalty looks at (0 without a penalty).
uint pen_count(uint nh) {
    return prm.penalty != 1.0 ? min(min(prm.last_n, nh), HIST) : 0u;
}

// This invocation's flags over the prefilter's per-slice NaN/inf words (two stages).
uint slice_flags(uint tid) {
    uint bad = 0u;
    for (uint j = tid; j < n_slices(pc.n_vocab); j += WG) {
        bad |= ids[pc.n_vocab + j];
    }
    return bad;
}

// One shared-memory tree over the invocations' values (hm), indices (hc) and NaN/inf flags
// (hc's second WG words), which the caller has stored: leaves in slot 0 the largest value (with
// `argmax` its index, ties to the lowest; index 0xFFFFFFFF is none) and in slot WG the OR of the
// flags. The verdict rides the reduction the path makes anyway, so no shared word is cleared
// or set atomically and no barrier is spent on it.
void reduce_best(uint tid, bool argmax) {
    sync();
    for (uint st = WG / 2u; st > 0u; st >>= 1) {
        if (tid < st) {
            const float ov = hm[tid + st];
            if (argmax) {
                const uint oi = hc[tid + st];
                if (oi != 0xFFFFFFFFu && (hc[tid] == 0xFFFFFFFFu || ov > hm[tid] || (ov == hm[tid] && oi < hc[tid]))) {
                    hm[tid] = ov;
                    hc[tid] = oi;
                }
            } else {
                hm[tid] = max(hm[tid], ov);
            }
            hc[WG + tid] |= hc[WG + tid + st];
        }
        sync();
    }
}

// Greedy: the argmax (ties: lowest id) with the verdict, in one pass and one tree. One stage
// reads the logits themselves, penalized on the way (no copy to the scratch); two stages read
// the candidates' penalized logits and the prefilter's per-slice flags.
// `pen` (one stage with a penalty) is a constant at each call, so the loop without a penalty
// carries no check.
void greedy(uint tid, uint nh, bool pen) {
    const uint n = n_cand();
    const uint last_n = pen ? pen_count(nh) : 0u;
    uint np = pen ? pen_next(tid, nh, last_n, 0u, n) : 0xFFFFFFFFu;
    float bv = -1.0 / 0.0;
    uint bi = 0xFFFFFFFFu;
    uint bad = ONE_STAGE != 0u ? 0u : slice_flags(tid);
    for (uint i = tid; i < n; i += WG) {
        float v;
        if (ONE_STAGE != 0u) {
            v = logits[pc.logits_off + i];
            bad |= bad_bits(v);
            if (pen && i == np) {
                v = penalize(v);
                np = pen_next(tid, nh, last_n, i + 1u, n);
            }
        } else {
            v = sc[i];
        }
        if (v > bv || bi == 0xFFFFFFFFu) {
            bv = v;
            bi = i;
        }
    }
    hm[tid] = bv;
    hc[tid] = bi;
    hc[WG + tid] = bad;
    reduce_best(tid, true);
    finish(tid, hc[0] < n ? cand_id(hc[0]) : 0u, hc[WG], nh);
}

// Sampling's first pass: the maximum of the (penalized) candidates' logits, for the softmax,
// with the verdict, in one pass and one tree. One stage reads the logits, penalizes them on the
// way and copies them to the scratch (the selection's candidates); two stages read the
// candidates and the prefilter's flags. The maximum is the one after top-k too, which always
// keeps the top. `pen` as for greedy.
float max_and_verdict(uint tid, uint nh, bool pen, out uint verdict) {
    const uint n = n_cand();
    const uint last_n = pen ? pen_count(nh) : 0u;
    uint np = pen ? pen_next(tid, nh, last_n, 0u, n) : 0xFFFFFFFFu;
    float mx = -1.0 / 0.0;
    uint bad = ONE_STAGE != 0u ? 0u : slice_flags(tid);
    for (uint i = tid; i < n; i += WG) {
        float v;
        if (ONE_STAGE != 0u) {
            v = logits[pc.logits_off + i];
            bad |= bad_bits(v);
            if (pen && i == np) {
                v = penalize(v);
                np = pen_next(tid, nh, last_n, i + 1u, n);
            }
            sc[i] = v;
        } else {
            v = sc[i];
        }
        mx = max(mx, v);
    }
    hm[tid] = mx;
    s_imax[tid] = mx;
    hc[WG + tid] = bad;
    reduce_best(tid, false);
    mx = hm[0];
    verdict = hc[WG];
    sync();
    return mx;
}

// What `narrow` keeps: the candidates whose logit is at least `t` (the top-k bound); whose
// weight exp((l - mx) / temp) is at least `t` (min-p's floor, loosened: the softmax pass applies
// the exact test); or, after the softmax pass, whose weight is positive and at least `t`.
// KEEP_BIN: whose weight is positive and in a nucleus bin (`wbin`) up to `t`.
const uint KEEP_LOGIT = 0u;
const uint KEEP_WEIGHT = 1u;
const uint KEEP_MASS = 2u;
const uint KEEP_BIN = 3u;

// The nucleus bound's bin of a weight w in (0, 1] (w = exp((l - max) / temp)): bin b < 15
// holds the weights in [2^(-2b-1), 2^(-2b+1)) (bin 0 [1/2, 1]), bin 15 those below 2^-29.
uint wbin(float w) {
    const int e = int((floatBitsToUint(w) >> 23) & 0xFFu) - 127;
    return min(uint(-min(e, 0)) / 2u, 15u);
}

bool keeps(uint mode, float v, float t, float mx) {
    if (mode == KEEP_LOGIT) {
        return v >= t;
    }
    if (mode == KEEP_WEIGHT) {
        return exp((v - mx) / prm.temp) >= t;
    }
    if (mode == KEEP_BIN) {
        const float w = exp((v - mx) / prm.temp);
        return w > 0.0 && float(wbin(w)) <= t;
    }
    return v > 0.0 && v >= t;
}

void list_kept(uint tid, uint cnt, uint mode, float t, float mx);

// Narrows the selection to the elements that `keeps`, listed in index order (so ties broken by
// index are still broken by id) at ids[list0()..]: a count over contiguous chunks, one scan,
// a write. Only from the whole candidate set (not narrowed yet), and only when it keeps at most
// half of it (otherwise the list's indirection costs more than it saves) and at least one
// element (NaN logits can keep none). The caller proves that every element it drops is one
// the rest of the chain would weigh 0 and that no sum over the kept ones needs it.
void narrow(uint tid, uint mode, float t, float mx) {
    const uint n = n_sel;
    const uint chunk = (n + WG - 1u) / WG;
    const uint lo = min(tid * chunk, n), hi = min(lo + chunk, n);
    uint cnt = 0u;
    for (uint i = lo; i < hi; i++) {
        cnt += keeps(mode, sc[i], t, mx) ? 1u : 0u;
    }
    list_kept(tid, cnt, mode, t, mx);
}

// The rest of `narrow` once each invocation has counted what it keeps of its chunk (`cnt`):
// the scan, the decision, the write.
void list_kept(uint tid, uint cnt, uint mode, float t, float mx) {
    const uint n = n_sel;
    const uint chunk = (n + WG - 1u) / WG;
    const uint lo = min(tid * chunk, n), hi = min(lo + chunk, n);
    hc[tid] = cnt;
    sync();
    if (tid == 0u) {
        uint run = 0u;
        for (uint i = 0u; i < WG; i++) {
            const uint c = hc[i];
            hc[i] = run;
            run += c;
        }
        s_count = run;
    }
    sync();
    const uint total = s_count;
    if (total == 0u || 2u * total > n) {
        return;
    }
    uint o = list0() + hc[tid];
    for (uint i = lo; i < hi; i++) {
        if (keeps(mode, sc[i], t, mx)) {
            ids[o] = i;
            o++;
        }
    }
    sync();
    n_sel = total;
    narrowed = true;
}

// Top-p without top-k: narrows to the nucleus' bins and returns the total weight s (of every
// candidate: top-p's target is top_p * s). One pass weighs each candidate and sums the mass and
// count of its bin (`wbin`: factors of 4 from the top weight 1) over contiguous chunks; one
// tree; the bins from the top are taken until their mass reaches top_p * s (with 1e-4 to
// spare for the sums' order), and the candidates in them are listed (`list_kept`). Those are a
// prefix of the order (all candidates of weight >= the last bin's floor) holding at least
// top_p * s, so the nucleus — the shortest prefix that does — ends among them, and nothing
// else needs a weight outside them (the total is s). The list holds the nucleus and the
// candidates within a factor of 4 of its last weight, often few enough for `select_small`.
float narrow_nucleus(uint tid, float mx) {
    const uint n = n_sel;
    const uint chunk = (n + WG - 1u) / WG;
    const uint lo = min(tid * chunk, n), hi = min(lo + chunk, n);
    float m[16];
    uint c[16];
    for (uint b = 0u; b < 16u; b++) {
        m[b] = 0.0;
        c[b] = 0u;
    }
    for (uint i = lo; i < hi; i++) {
        const float w = exp((sc[i] - mx) / prm.temp);
        if (w > 0.0) {
            const uint b = wbin(w);
            m[b] += w;
            c[b] += 1u;
        }
    }
    bins_tree(tid, m, c);
    if (tid == 0u) {
        float s = 0.0;
        for (uint b = 0u; b < 16u; b++) {
            s += hm[b * WG];
        }
        const float target = prm.top_p * s * 1.0001;
        float cum = 0.0;
        uint last = 15u;
        for (uint b = 0u; b < 16u; b++) {
            cum += hm[b * WG];
            if (cum >= target) {
                last = b;
                break;
            }
        }
        s_above_m = s;
        s_key = last;
    }
    sync();
    const float s = s_above_m;
    const uint last = s_key;
    uint cnt = 0u;
    for (uint b = 0u; b <= last; b++) {
        cnt += c[b];
    }
    list_kept(tid, cnt, KEEP_BIN, float(last), mx);
    return s;
}

// The top-k bound (1 <= k <= WG): the k-th largest of the invocations' maxima of the first pass.
// Those are k distinct candidates at or above it, so every token of the top k is at or above it
// too, and narrowing to the candidates at or above it keeps the top k (and its total) whole.
float kth_max(uint tid, uint k) {
    if (tid == 0u) {
        s_kth = -1.0 / 0.0;
    }
    sync();
    const float v = s_imax[tid];
    uint rank = 0u;
    for (uint o = 0u; o < WG; o++) {
        const float w = s_imax[o];
        rank += (w > v || (w == v && o < tid)) ? 1u : 0u;
    }
    if (rank == k - 1u) {
        s_kth = v;
    }
    sync();
    return s_kth;
}

// The rest of the chain when narrowing left at most WG candidates and every sum it needs among
// them (narrowed before the softmax pass): each invocation ranks one candidate in the order
// (logit desc, index asc) against the others and weighs it, then invocation 0 walks the ranks
// once, as the CPU sampler walks its sorted candidates: top-k, the total, top-p, min-p, the
// draw. No radix search (three of them, 8 passes and 8 trees each) and no pass per step.
// `s_all`: top-p's total when the list does not hold every weight (`narrow_nucleus`), else < 0
// (the total of the kept).
uint walk(uint m, float s_all);

void select_small(uint tid, float mx, uint verdict, uint nh, float s_all) {
    const uint m = n_sel;
    uint key = 0u;
    float v = 0.0;
    if (tid < m) {
        v = sc[at(tid)];
        key = okey(v);
        hc[tid] = key;
    }
    sync();
    if (tid < m) {
        uint r = 0u;
        for (uint o = 0u; o < m; o++) {
            const uint ko = hc[o];
            r += (ko > key || (ko == key && o < tid)) ? 1u : 0u;
        }
        hc[WG + r] = tid;
        hm[r] = exp((v - mx) / prm.temp);
    }
    sync();
    if (tid == 0u) {
        s_cut = walk(m, s_all);
    }
    sync();
    finish(tid, cand_id(at(s_cut)), verdict, nh);
}

// Invocation 0's walk over m ranked candidates (rank r's weight in hm[r], its list position in
// hc[WG + r]), as the CPU sampler walks its sorted candidates: top-k, the total (`s_all` when
// >= 0, else the sum of the kept weights), top-p, min-p, the draw. Returns the chosen one's
// list position.
uint walk(uint m, float s_all) {
    {
        uint keep = m;
        if (prm.top_k > 0u && prm.top_k < keep) {
            keep = prm.top_k;
        }
        if (prm.top_p < 1.0) {
            float s = s_all;
            if (s < 0.0) {
                s = 0.0;
                for (uint r = 0u; r < keep; r++) {
                    s += hm[r];
                }
            }
            const float target = prm.top_p * s;
            float cum = 0.0;
            for (uint r = 0u; r < keep; r++) {
                cum += hm[r];
                if (cum >= target) {
                    keep = r + 1u;
                    break;
                }
            }
        }
        float s2 = 0.0;
        uint last = 0u;
        for (uint r = 0u; r < keep; r++) {
            float w = hm[r];
            if (prm.min_p > 0.0 && w < prm.min_p) {
                w = 0.0;
            }
            hm[r] = w;
            s2 += w;
            if (w > 0.0) {
                last = r;
            }
        }
        const float target = prm.u * s2;
        float cum = 0.0;
        uint pick = last;
        for (uint r = 0u; r < keep; r++) {
            cum += hm[r];
            if (cum > target) {
                pick = r;
                break;
            }
        }
        return hc[WG + pick];
    }
}

// Element i of the candidates as the top-k-bounded passes read it, in the strided order
// i = tid, tid + WG, ...: one stage the logit, penalized when it is the history token `np` of
// this invocation's class (then `np` steps to the next: pen_next); two stages the candidate's
// penalized logit. `pen` is a constant at each call.
float tk_val(uint tid, uint i, uint nh, uint last_n, uint n, bool pen, inout uint np) {
    if (ONE_STAGE == 0u) {
        return sc[i];
    }
    float v = logits[pc.logits_off + i];
    if (pen && i == np) {
        v = penalize(v);
        np = pen_next(tid, nh, last_n, i + 1u, n);
    }
    return v;
}

// The top-k list's first pass: this invocation's maximum (s_imax) and NaN/inf flags (hc[tid])
// over its strided candidates, with nothing written to the scratch.
void tk_first(uint tid, uint nh, bool pen) {
    const uint n = n_cand();
    const uint last_n = pen ? pen_count(nh) : 0u;
    uint np = pen ? pen_next(tid, nh, last_n, 0u, n) : 0xFFFFFFFFu;
    float mx = -1.0 / 0.0;
    uint bad = ONE_STAGE != 0u ? 0u : slice_flags(tid);
    for (uint i = tid; i < n; i += WG) {
        const float v = tk_val(tid, i, nh, last_n, n, pen, np);
        if (ONE_STAGE != 0u) {
            bad |= bad_bits(v);
        }
        mx = max(mx, v);
    }
    s_imax[tid] = mx;
    hc[tid] = bad;
}

// The top-k list's second pass: every candidate at or above `t` appended to the shared list
// (its index and penalized logit; s_count counts them all, the list keeps the first WG).
void tk_list(uint tid, uint nh, bool pen, float t) {
    const uint n = n_cand();
    const uint last_n = pen ? pen_count(nh) : 0u;
    uint np = pen ? pen_next(tid, nh, last_n, 0u, n) : 0xFFFFFFFFu;
    for (uint i = tid; i < n; i += WG) {
        const float v = tk_val(tid, i, nh, last_n, n, pen, np);
        if (v >= t) {
            const uint slot = atomicAdd(s_count, 1u);
            if (slot < WG) {
                l_idx[slot] = i;
                l_val[slot] = v;
            }
        }
    }
}

// The sum over the workgroup of each invocation's `c` (tid 0 adds them up; uniform result).
uint tk_sum(uint tid, uint c) {
    hc[tid] = c;
    sync();
    if (tid == 0u) {
        uint s = 0u;
        for (uint o = 0u; o < WG; o++) {
            s += hc[o];
        }
        s_cnt_eq = s;
    }
    sync();
    const uint r = s_cnt_eq;
    sync();
    return r;
}

// The exact top k when more than WG candidates reach the bound (ties or near-ties around it;
// rare on a model's logits, so this path is simple rather than fast): the penalized logits in
// the scratch (one stage copies them), the k-th largest key T by bisection over the keys between
// the bound's and the maximum's (a count per step), then the list = every candidate above T and
// the first ones equal to T in index order (id order) until it holds k — the top k in the order
// (logit desc, id asc). Leaves the list's length (k) in s_count.
void tk_exact(uint tid, uint nh, bool pen, uint k, float t, float mx) {
    const uint n = n_cand();
    if (ONE_STAGE != 0u) {
        const uint last_n = pen ? pen_count(nh) : 0u;
        uint np = pen ? pen_next(tid, nh, last_n, 0u, n) : 0xFFFFFFFFu;
        for (uint i = tid; i < n; i += WG) {
            sc[i] = tk_val(tid, i, nh, last_n, n, pen, np);
        }
        sync();
    }
    // count(key >= lo) >= k > count(key >= hi); every logit is finite here.
    uint lo = okey(t), hi = okey(mx) + 1u;
    while (hi - lo > 1u) {
        const uint mid = lo + (hi - lo) / 2u;
        uint c = 0u;
        for (uint i = tid; i < n; i += WG) {
            c += okey(sc[i]) >= mid ? 1u : 0u;
        }
        if (tk_sum(tid, c) >= k) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    const uint T = lo;
    const uint chunk = (n + WG - 1u) / WG;
    const uint c0 = min(tid * chunk, n), c1 = min(c0 + chunk, n);
    uint above = 0u, eq = 0u;
    for (uint i = c0; i < c1; i++) {
        const uint key = okey(sc[i]);
        above += key > T ? 1u : 0u;
        eq += key == T ? 1u : 0u;
    }
    hc[tid] = above;
    hc[WG + tid] = eq;
    sync();
    if (tid == 0u) {
        uint ra = 0u, re = 0u;
        for (uint o = 0u; o < WG; o++) {
            const uint a = hc[o], e = hc[WG + o];
            hc[o] = ra;
            hc[WG + o] = re;
            ra += a;
            re += e;
        }
        s_count = ra;
    }
    sync();
    const uint n_above = s_count;
    uint oa = hc[tid], oe = hc[WG + tid];
    for (uint i = c0; i < c1; i++) {
        const float v = sc[i];
        const uint key = okey(v);
        uint slot = 0xFFFFFFFFu;
        if (key > T) {
            slot = oa;
            oa++;
        } else if (key == T) {
            if (oe < k - n_above) {
                slot = n_above + oe;
            }
            oe++;
        }
        if (slot != 0xFFFFFFFFu) {
            l_idx[slot] = i;
            l_val[slot] = v;
        }
    }
    sync();
    if (tid == 0u) {
        s_count = k;
    }
    sync();
}

// Top-k-bounded sampling (TOPK; temperature > 0, 1 <= top_k <= WG): two reads of the
// candidates and no scratch copy. The first pass keeps each invocation's maximum and flags;
// the k-th largest of the maxima (`kth_max`'s bound: k distinct candidates at or above it, so
// the whole top k is too) and the row maximum (the largest of them) come from one ranking;
// the second pass appends every candidate at or above the bound to a list in shared memory —
// about 1.2 k of them for a model's logits. With at most WG there (else `tk_exact` makes it
// the exact top k), the list is ranked by (logit desc, index asc) and walked as the CPU
// sampler walks its sorted candidates (`select_small`'s walk): top-k, the total, top-p, min-p,
// the draw. The list's indices are also written at ids[list0()..] (what was ranked; the
// sampler tests check it holds every token the reference can draw).
void topk_main(uint tid, uint nh, bool pen) {
    const uint k = prm.top_k;
    if (tid == 0u) {
        s_kth = -1.0 / 0.0;
        s_max = -1.0 / 0.0;
        s_count = 0u;
    }
    tk_first(tid, nh, pen);
    sync();
    {
        const float v = s_imax[tid];
        uint rank = 0u;
        for (uint o = 0u; o < WG; o++) {
            const float w = s_imax[o];
            rank += (w > v || (w == v && o < tid)) ? 1u : 0u;
        }
        if (rank == k - 1u) {
            s_kth = v;
        }
        if (rank == 0u) {
            s_max = v;
        }
        if (tid == 0u) {
            uint bad = 0u;
            for (uint o = 0u; o < WG; o++) {
                bad |= hc[o];
            }
            s_bad = bad;
        }
    }
    sync();
    const float t = s_kth, mx = s_max;
    const uint verdict = s_bad;
    tk_list(tid, nh, pen, t);
    sync();
    if (s_count > WG && verdict == 0u) {
        tk_exact(tid, nh, pen, k, t, mx);
    }
    const uint m = min(s_count, WG);
    uint key = 0u, idx = 0u;
    float v = 0.0;
    if (tid < m) {
        v = l_val[tid];
        idx = l_idx[tid];
        key = okey(v);
        hc[tid] = key;
        ids[list0() + tid] = idx;
    }
    sync();
    if (tid < m) {
        uint r = 0u;
        for (uint o = 0u; o < m; o++) {
            const uint ko = hc[o];
            r += (ko > key || (ko == key && l_idx[o] < idx)) ? 1u : 0u;
        }
        hc[WG + r] = tid;
        hm[r] = exp((v - mx) / prm.temp);
    }
    sync();
    if (tid == 0u) {
        s_cut = m == 0u ? 0u : walk(m, -1.0);
    }
    sync();
    finish(tid, m == 0u ? 0u : cand_id(l_idx[s_cut]), verdict, nh);
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    if (ONE_STAGE == 0u) {
        n_cand_two = cand_count(pc.n_vocab, cand_per_slice(prm.temp, prm.top_k, pc.n_vocab));
    }
    const uint n = n_cand();
    const uint nh = state[S_NHIST];
    const bool pen = ONE_STAGE != 0u && pen_count(nh) != 0u;
    if (GREEDY != 0u || prm.temp <= 0.0) {
        if (pen) {
            greedy(tid, nh, true);
        } else {
            greedy(tid, nh, false);
        }
        return;
    }
    if (TOPK != 0u) {
        if (pen) {
            topk_main(tid, nh, true);
        } else {
            topk_main(tid, nh, false);
        }
        return;
    }
    uint verdict;
    float mx;
    if (pen) {
        mx = max_and_verdict(tid, nh, true, verdict);
    } else {
        mx = max_and_verdict(tid, nh, false, verdict);
    }
    n_sel = n;

    const bool top_k = prm.top_k > 0u && prm.top_k < n;
    const bool top_p = prm.top_p < 1.0;
    const bool min_p = prm.min_p > 0.0;
    // Narrowing before the softmax pass, where nothing dropped counts in a total: top-k (k up
    // to WG) to the candidates at or above its bound; min-p without top-p to a floor 0.1 %
    // below min_p (the softmax pass applies min_p itself; min-p's survivors are a prefix of the
    // order, so top-k of them is the top-k's survivors); top-p without a top-k to the bins of
    // weight that hold its nucleus (`narrow_nucleus`, whose pass sums the total: `s_all`).
    // Top-p after a top-k of more than WG needs the total of the kept weights first: it narrows
    // after the softmax pass.
    float s_all = -1.0;
    if (top_k && prm.top_k <= WG) {
        narrow(tid, KEEP_LOGIT, kth_max(tid, prm.top_k), mx);
    } else if (min_p && !top_p) {
        narrow(tid, KEEP_WEIGHT, prm.min_p * 0.999, mx);
    } else if (top_p && !top_k) {
        s_all = narrow_nucleus(tid, mx);
    }
    if (narrowed && n_sel <= WG) {
        select_small(tid, mx, verdict, nh, s_all);
        return;
    }

    // Top-k: the cut (key T, the last kept element among keys equal to T) is applied in the
    // softmax pass, which weighs the tokens past it 0.
    const bool cut_k = top_k && prm.top_k < n_sel;
    uint kT = 0u, kcut = n_sel;
    if (cut_k) {
        search(false, prm.top_k, 0.0, false);
        nth_equal(false, prm.top_k - s_above_c - 1u);
        kT = s_key;
        kcut = s_cut;
    }
    // Without top-p, min-p is applied in the same pass (its total is then the softmax's).
    const bool min_p_now = !top_p && min_p;
    float s = 0.0;
    for (uint j = tid; j < n_sel; j += WG) {
        const uint i = at(j);
        const float v = sc[i];
        float w = 0.0;
        if (!cut_k || okey(v) > kT || (okey(v) == kT && j <= kcut)) {
            w = exp((v - mx) / prm.temp);
        }
        if (min_p_now && w < prm.min_p) {
            w = 0.0;
        }
        sc[i] = w;
        s += w;
    }
    s = reduce_f(s, false);
    if (narrowed && s_all >= 0.0) {
        s = s_all;
    }

    // Narrowing after the softmax pass, to the weights that can still be drawn: positive (past
    // a top-k cut of more than WG), at least min_p, and for top-p at least (1 - top_p) s / 4n:
    // all the weights below that sum to less than (1 - top_p) s / 4, so the rest hold more than
    // top_p s and the nucleus (a prefix of the order) ends among them.
    if (!narrowed && (top_k || top_p)) {
        float t = min_p ? prm.min_p : 0.0;
        if (top_p) {
            t = max(t, (1.0 - prm.top_p) * s / (4.0 * float(n_sel)));
        }
        narrow(tid, KEEP_MASS, t, mx);
    }

    float s2 = s;
    if (top_p) {
        const float target = prm.top_p * s;
        search(true, 0u, target, false);
        const float tw = uintBitsToFloat(s_key);
        float need = ceil((target - s_above_m) / tw) - 1.0;
        uint r = uint(clamp(need, 0.0, float(s_cnt_eq - 1u)));
        nth_equal(true, r);
        const uint T = s_key, cut = s_cut;
        // The top-p cut, min-p and the draw's total in one pass.
        s2 = 0.0;
        for (uint j = tid; j < n_sel; j += WG) {
            const uint i = at(j);
            float w = sc[i];
            const uint key = floatBitsToUint(w);
            if (key < T || (key == T && j > cut) || (min_p && w < prm.min_p)) {
                w = 0.0;
                sc[i] = 0.0;
            }
            s2 += w;
        }
        s2 = reduce_f(s2, false);
    }
    const float target = prm.u * s2;
    search(true, 0u, target, true);
    const float tw = uintBitsToFloat(s_key);
    float idx = floor((target - s_above_m) / tw);
    uint r = uint(clamp(idx, 0.0, float(s_cnt_eq - 1u)));
    nth_equal(true, r);
    finish(tid, s_cut < n_sel ? cand_id(at(s_cut)) : 0u, verdict, nh);
}
