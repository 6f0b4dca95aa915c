// Dequantization of ggml weight blocks, 32 elements ("one unit") at a time.
//
// Weights stay in their GGUF block layout (blocks of 18, 20, 22, 34, 84, 110, 144, 176 or 210
// bytes, only 2-byte aligned), read through 32-bit words so that no 8/16-bit storage feature is
// needed. The includer defines WLOAD(seg, word) to read word `word` of weight buffer `seg`.
// A unit is one 32-element block, or one 32-element sub-block of a 256-element k-quant block.
// Formats follow ggml's block definitions (ggml-common.h); src/quant is the CPU ground truth.

#define T_F32 0u
#define T_F16 1u
#define T_Q4_0 2u
#define T_Q4_1 3u
#define T_Q5_0 6u
#define T_Q5_1 7u
#define T_Q8_0 8u
#define T_Q2_K 10u
#define T_Q3_K 11u
#define T_Q4_K 12u
#define T_Q5_K 13u
#define T_Q6_K 14u

uint ld_u8(uint s, uint o) { return (WLOAD(s, o >> 2) >> ((o & 3u) * 8u)) & 0xFFu; }
// `o` must be even.
uint ld_u16(uint s, uint o) { return (WLOAD(s, o >> 2) >> ((o & 2u) * 8u)) & 0xFFFFu; }
// `o` must be even; reads across a word boundary when it is not a multiple of 4.
uint ld_u32(uint s, uint o) {
    uint w = o >> 2;
    if ((o & 2u) == 0u) {
        return WLOAD(s, w);
    }
    return (WLOAD(s, w) >> 16) | (WLOAD(s, w + 1u) << 16);
}
float ld_f16(uint s, uint o) { return unpackHalf2x16(ld_u16(s, o)).x; }

// Runs of 4-byte values at an even offset `o`, each word of the buffer loaded once (ld_u32
// loads two words per value when `o` is not a multiple of 4, and on lavapipe every load is a
// loop over the SIMD lanes). The word after the run is loaded only when the run is unaligned,
// so a run at the very end of a buffer never reads past it.
uint funnel(uint lo, uint hi, uint sh) { return (lo >> sh) | ((hi << 16) << (16u - sh)); }
// q[0..N) = the N 4-byte values at even byte offset `o` of buffer `s`.
#define LD_RUN(s, o, q, N)                                                  \
    {                                                                       \
        uint w_ = (o) >> 2, sh_ = ((o) & 2u) * 8u;                          \
        uint prev_ = WLOAD(s, w_);                                          \
        for (uint i_ = 0u; i_ < (N); i_++) {                                \
            uint next_ = 0u;                                                \
            if (i_ + 1u < (N) || sh_ != 0u) {                               \
                next_ = WLOAD(s, w_ + i_ + 1u);                             \
            }                                                               \
            q[i_] = funnel(prev_, next_, sh_);                              \
            prev_ = next_;                                                  \
        }                                                                   \
    }

// Bytes per row of `k` elements.
uint row_bytes(uint ty, uint k) {
    switch (ty) {
    case T_F32: return 4u * k;
    case T_F16: return 2u * k;
    case T_Q4_0: return k / 32u * 18u;
    case T_Q4_1: return k / 32u * 20u;
    case T_Q5_0: return k / 32u * 22u;
    case T_Q5_1: return k / 32u * 24u;
    case T_Q8_0: return k / 32u * 34u;
    case T_Q2_K: return k / 256u * 84u;
    case T_Q3_K: return k / 256u * 110u;
    case T_Q4_K: return k / 256u * 144u;
    case T_Q5_K: return k / 256u * 176u;
    case T_Q6_K: return k / 256u * 210u;
    }
    return 0u;
}

// The 6-bit scale and min `j` (0..7) of a Q4_K / Q5_K block whose 12 scale bytes start at `o`.
void scale_min_k4(uint s, uint o, uint j, out float sc, out float mn) {
    if (j < 4u) {
        sc = float(ld_u8(s, o + j) & 63u);
        mn = float(ld_u8(s, o + j + 4u) & 63u);
    } else {
        uint a = ld_u8(s, o + j + 4u);
        sc = float((a & 0xFu) | ((ld_u8(s, o + j - 4u) >> 6) << 4));
        mn = float((a >> 4) | ((ld_u8(s, o + j) >> 6) << 4));
    }
}

// The same from the 12 scale bytes as 3 words (`s0` bytes 0-3, `s1` 4-7, `s2` 8-11): no loads,
// no branch (lavapipe runs both sides of a branch, and every load of both).
void scale_min_k4w(uint s0, uint s1, uint s2, uint j, out float sc, out float mn) {
    uint sh = (j & 3u) * 8u;
    uint b0 = (s0 >> sh) & 0xFFu, b1 = (s1 >> sh) & 0xFFu, b2 = (s2 >> sh) & 0xFFu;
    bool lo = j < 4u;
    sc = float(lo ? (b0 & 63u) : ((b2 & 0xFu) | ((b0 >> 6) << 4)));
    mn = float(lo ? (b1 & 63u) : ((b2 >> 4) | ((b1 >> 6) << 4)));
}

// The 32 weights of unit `u` of the row starting at byte `rb` of buffer `s`. For F32/F16 rows
// whose length `k` is not a multiple of 32, elements past the end read as 0.
void dq32(uint s, uint ty, uint rb, uint u, uint k, out float v[32]) {
    switch (ty) {
    case T_F32: {
        uint e0 = u * 32u;
        for (uint i = 0u; i < 32u; i++) {
            v[i] = (e0 + i < k) ? uintBitsToFloat(WLOAD(s, (rb >> 2) + e0 + i)) : 0.0;
        }
        break;
    }
    case T_F16: {
        uint e0 = u * 32u;
        for (uint i = 0u; i < 32u; i++) {
            v[i] = (e0 + i < k) ? ld_f16(s, rb + 2u * (e0 + i)) : 0.0;
        }
        break;
    }
    case T_Q4_0:
    case T_Q4_1: {
        bool q41 = ty == T_Q4_1;
        uint b = rb + u * (q41 ? 20u : 18u);
        float d = ld_f16(s, b);
        float m = q41 ? ld_f16(s, b + 2u) : -8.0 * d;
        uint qs[4];
        LD_RUN(s, b + (q41 ? 4u : 2u), qs, 4u);
        for (uint j = 0u; j < 4u; j++) {
            uint q = qs[j];
            for (uint i = 0u; i < 4u; i++) {
                v[4u * j + i] = d * float((q >> (8u * i)) & 0xFu) + m;
                v[4u * j + i + 16u] = d * float((q >> (8u * i + 4u)) & 0xFu) + m;
            }
        }
        break;
    }
    case T_Q5_0:
    case T_Q5_1: {
        bool q51 = ty == T_Q5_1;
        uint b = rb + u * (q51 ? 24u : 22u);
        float d = ld_f16(s, b);
        float m = q51 ? ld_f16(s, b + 2u) : -16.0 * d;
        // qh and the quants are five consecutive 4-byte values.
        uint hq[5];
        LD_RUN(s, b + (q51 ? 4u : 2u), hq, 5u);
        uint qh = hq[0];
        for (uint j = 0u; j < 4u; j++) {
            uint q = hq[j + 1u];
            for (uint i = 0u; i < 4u; i++) {
                uint e = 4u * j + i;
                uint lo = ((q >> (8u * i)) & 0xFu) | (((qh >> e) & 1u) << 4);
                uint hi = ((q >> (8u * i + 4u)) & 0xFu) | (((qh >> (e + 16u)) & 1u) << 4);
                v[e] = d * float(lo) + m;
                v[e + 16u] = d * float(hi) + m;
            }
        }
        break;
    }
    case T_Q8_0: {
        uint b = rb + u * 34u;
        float d = ld_f16(s, b);
        uint qs[8];
        LD_RUN(s, b + 2u, qs, 8u);
        for (uint j = 0u; j < 8u; j++) {
            int q = int(qs[j]);
            for (uint i = 0u; i < 4u; i++) {
                v[4u * j + i] = d * float(bitfieldExtract(q, int(8u * i), 8));
            }
        }
        break;
    }
    case T_Q2_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, j = sub & 3u;
        uint b = rb + sb * 84u;
        float d = ld_f16(s, b + 80u), dmin = ld_f16(s, b + 82u);
        for (uint half_ = 0u; half_ < 2u; half_++) {
            uint sc = ld_u8(s, b + 8u * h + 2u * j + half_);
            float dl = d * float(sc & 0xFu), ml = dmin * float(sc >> 4);
            for (uint w = 0u; w < 4u; w++) {
                uint q = ld_u32(s, b + 16u + 32u * h + 16u * half_ + 4u * w);
                for (uint i = 0u; i < 4u; i++) {
                    v[16u * half_ + 4u * w + i] = dl * float((q >> (8u * i + 2u * j)) & 3u) - ml;
                }
            }
        }
        break;
    }
    case T_Q3_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, j = sub & 3u;
        uint b = rb + sb * 110u;
        float d = ld_f16(s, b + 108u);
        for (uint half_ = 0u; half_ < 2u; half_++) {
            uint is = 8u * h + 2u * j + half_;
            uint bi = is & 3u, g = is >> 2;
            uint lo = ld_u8(s, b + 96u + 4u * (g & 1u) + bi);
            lo = (g >= 2u) ? (lo >> 4) : (lo & 0xFu);
            uint hi = (ld_u8(s, b + 96u + 8u + bi) >> (2u * g)) & 3u;
            float dl = d * float(int(lo | (hi << 4)) - 32);
            for (uint w = 0u; w < 4u; w++) {
                uint l0 = 16u * half_ + 4u * w;
                uint q = ld_u32(s, b + 32u + 32u * h + l0);
                uint hm = ld_u32(s, b + l0);
                for (uint i = 0u; i < 4u; i++) {
                    int qv = int((q >> (8u * i + 2u * j)) & 3u);
                    int hb = int((hm >> (8u * i + 4u * h + j)) & 1u);
                    v[l0 + i] = dl * float(qv - (hb == 1 ? 0 : 4));
                }
            }
        }
        break;
    }
    case T_Q4_K:
    case T_Q5_K: {
        // Blocks of 144 and 176 bytes in rows of whole blocks: every field is word-aligned, so
        // each word is loaded once (d and dmin share one; the 12 scale bytes are 3 words).
        bool q5 = ty == T_Q5_K;
        uint sb = u >> 3, sub = u & 7u, p = sub >> 1;
        uint bw = (rb + sb * (q5 ? 176u : 144u)) >> 2;
        vec2 dm = unpackHalf2x16(WLOAD(s, bw));
        float sc, mn;
        scale_min_k4w(WLOAD(s, bw + 1u), WLOAD(s, bw + 2u), WLOAD(s, bw + 3u), sub, sc, mn);
        float dl = dm.x * sc, ml = dm.y * mn;
        uint shift = (sub & 1u) * 4u;
        uint qw = bw + (q5 ? 12u : 4u) + 8u * p;
        for (uint w = 0u; w < 8u; w++) {
            uint q = WLOAD(s, qw + w);
            uint qh = q5 ? WLOAD(s, bw + 4u + w) : 0u;
            for (uint i = 0u; i < 4u; i++) {
                uint val = (q >> (8u * i + shift)) & 0xFu;
                val |= ((qh >> (8u * i + sub)) & 1u) << 4;
                v[4u * w + i] = dl * float(val) - ml;
            }
        }
        break;
    }
    case T_Q6_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, c = sub & 3u;
        uint b = rb + sb * 210u;
        float d = ld_f16(s, b + 208u);
        uint qlo = b + 64u * h + (c & 1u) * 32u;
        uint qho = b + 128u + 32u * h;
        uint nib = (c >> 1) * 4u;
        uint qls[8], qhs[8];
        LD_RUN(s, qlo, qls, 8u);
        LD_RUN(s, qho, qhs, 8u);
        for (uint w = 0u; w < 8u; w++) {
            uint ql = qls[w];
            uint qh = qhs[w];
            uint l0 = 4u * w;
            int scv = bitfieldExtract(int(ld_u8(s, b + 192u + 8u * h + l0 / 16u + 2u * c)), 0, 8);
            float dl = d * float(scv);
            for (uint i = 0u; i < 4u; i++) {
                uint q = ((ql >> (8u * i + nib)) & 0xFu) | (((qh >> (8u * i + 2u * c)) & 3u) << 4);
                v[l0 + i] = dl * float(int(q) - 32);
            }
        }
        break;
    }
    default:
        for (uint i = 0u; i < 32u; i++) {
            v[i] = 0.0;
        }
    }
}

// A quarter of unit `u`: its weights 8*qt .. 8*qt+7 (qt < 4), the same values as dq32's
// v[8*qt ..], for kernels where 4 invocations share a unit (matmul_tiled_vec4.comp): each reads
// its own 8 bytes of quants (neighbouring invocations, neighbouring bytes of one row) and the
// unit's scales. For F32/F16 rows whose length `k` is not a multiple of 32, elements past the
// end read as 0.
void dq8(uint s, uint ty, uint rb, uint u, uint qt, uint k, out float v[8]) {
    switch (ty) {
    case T_F32: {
        uint e0 = u * 32u + 8u * qt;
        for (uint i = 0u; i < 8u; i++) {
            v[i] = (e0 + i < k) ? uintBitsToFloat(WLOAD(s, (rb >> 2) + e0 + i)) : 0.0;
        }
        break;
    }
    case T_F16: {
        uint e0 = u * 32u + 8u * qt;
        if (e0 + 8u <= k) {
            uint w[4];
            LD_RUN(s, rb + 2u * e0, w, 4u);
            for (uint j = 0u; j < 4u; j++) {
                vec2 h = unpackHalf2x16(w[j]);
                v[2u * j] = h.x;
                v[2u * j + 1u] = h.y;
            }
        } else {
            for (uint i = 0u; i < 8u; i++) {
                v[i] = (e0 + i < k) ? ld_f16(s, rb + 2u * (e0 + i)) : 0.0;
            }
        }
        break;
    }
    case T_Q4_0:
    case T_Q4_1: {
        // Quarters 0, 1: low nibbles of quant bytes 0-7, 8-15; quarters 2, 3: their high nibbles.
        bool q41 = ty == T_Q4_1;
        uint b = rb + u * (q41 ? 20u : 18u);
        float d = ld_f16(s, b);
        float m = q41 ? ld_f16(s, b + 2u) : -8.0 * d;
        uint qs[2];
        LD_RUN(s, b + (q41 ? 4u : 2u) + 8u * (qt & 1u), qs, 2u);
        uint sh = (qt >> 1) * 4u;
        for (uint j = 0u; j < 2u; j++) {
            for (uint i = 0u; i < 4u; i++) {
                v[4u * j + i] = d * float((qs[j] >> (8u * i + sh)) & 0xFu) + m;
            }
        }
        break;
    }
    case T_Q5_0:
    case T_Q5_1: {
        bool q51 = ty == T_Q5_1;
        uint b = rb + u * (q51 ? 24u : 22u);
        float d = ld_f16(s, b);
        float m = q51 ? ld_f16(s, b + 2u) : -16.0 * d;
        uint qh = ld_u32(s, b + (q51 ? 4u : 2u));
        uint qs[2];
        LD_RUN(s, b + (q51 ? 8u : 6u) + 8u * (qt & 1u), qs, 2u);
        uint sh = (qt >> 1) * 4u;
        for (uint j = 0u; j < 2u; j++) {
            for (uint i = 0u; i < 4u; i++) {
                uint e = 8u * qt + 4u * j + i;
                uint val = ((qs[j] >> (8u * i + sh)) & 0xFu) | (((qh >> e) & 1u) << 4);
                v[4u * j + i] = d * float(val) + m;
            }
        }
        break;
    }
    case T_Q8_0: {
        uint b = rb + u * 34u;
        float d = ld_f16(s, b);
        uint qs[2];
        LD_RUN(s, b + 2u + 8u * qt, qs, 2u);
        for (uint j = 0u; j < 2u; j++) {
            for (uint i = 0u; i < 4u; i++) {
                v[4u * j + i] = d * float(bitfieldExtract(int(qs[j]), int(8u * i), 8));
            }
        }
        break;
    }
    case T_Q2_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, j = sub & 3u, half_ = qt >> 1;
        uint b = rb + sb * 84u;
        float d = ld_f16(s, b + 80u), dmin = ld_f16(s, b + 82u);
        uint sc = ld_u8(s, b + 8u * h + 2u * j + half_);
        float dl = d * float(sc & 0xFu), ml = dmin * float(sc >> 4);
        uint qs[2];
        LD_RUN(s, b + 16u + 32u * h + 8u * qt, qs, 2u);
        for (uint w = 0u; w < 2u; w++) {
            for (uint i = 0u; i < 4u; i++) {
                v[4u * w + i] = dl * float((qs[w] >> (8u * i + 2u * j)) & 3u) - ml;
            }
        }
        break;
    }
    case T_Q3_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, j = sub & 3u, half_ = qt >> 1;
        uint b = rb + sb * 110u;
        float d = ld_f16(s, b + 108u);
        uint is = 8u * h + 2u * j + half_;
        uint bi = is & 3u, g = is >> 2;
        uint lo = ld_u8(s, b + 96u + 4u * (g & 1u) + bi);
        lo = (g >= 2u) ? (lo >> 4) : (lo & 0xFu);
        uint hi = (ld_u8(s, b + 96u + 8u + bi) >> (2u * g)) & 3u;
        float dl = d * float(int(lo | (hi << 4)) - 32);
        uint qs[2], hm[2];
        LD_RUN(s, b + 32u + 32u * h + 8u * qt, qs, 2u);
        LD_RUN(s, b + 8u * qt, hm, 2u);
        for (uint w = 0u; w < 2u; w++) {
            for (uint i = 0u; i < 4u; i++) {
                int qv = int((qs[w] >> (8u * i + 2u * j)) & 3u);
                int hb = int((hm[w] >> (8u * i + 4u * h + j)) & 1u);
                v[4u * w + i] = dl * float(qv - (hb == 1 ? 0 : 4));
            }
        }
        break;
    }
    case T_Q4_K:
    case T_Q5_K: {
        bool q5 = ty == T_Q5_K;
        uint sb = u >> 3, sub = u & 7u, p = sub >> 1;
        uint b = rb + sb * (q5 ? 176u : 144u);
        float d = ld_f16(s, b), dmin = ld_f16(s, b + 2u);
        float sc, mn;
        scale_min_k4(s, b + 4u, sub, sc, mn);
        float dl = d * sc, ml = dmin * mn;
        uint shift = (sub & 1u) * 4u;
        uint qs[2], qh[2];
        LD_RUN(s, b + (q5 ? 48u : 16u) + 32u * p + 8u * qt, qs, 2u);
        if (q5) {
            LD_RUN(s, b + 16u + 8u * qt, qh, 2u);
        } else {
            qh[0] = 0u;
            qh[1] = 0u;
        }
        for (uint w = 0u; w < 2u; w++) {
            for (uint i = 0u; i < 4u; i++) {
                uint val = (qs[w] >> (8u * i + shift)) & 0xFu;
                val |= ((qh[w] >> (8u * i + sub)) & 1u) << 4;
                v[4u * w + i] = dl * float(val) - ml;
            }
        }
        break;
    }
    case T_Q6_K: {
        uint sb = u >> 3, sub = u & 7u, h = sub >> 2, c = sub & 3u;
        uint b = rb + sb * 210u;
        float d = ld_f16(s, b + 208u);
        uint nib = (c >> 1) * 4u;
        uint qls[2], qhs[2];
        LD_RUN(s, b + 64u * h + (c & 1u) * 32u + 8u * qt, qls, 2u);
        LD_RUN(s, b + 128u + 32u * h + 8u * qt, qhs, 2u);
        // One scale per 16 weights: quarters 0-1 take the first, 2-3 the second.
        int scv = bitfieldExtract(int(ld_u8(s, b + 192u + 8u * h + (qt >> 1) + 2u * c)), 0, 8);
        float dl = d * float(scv);
        for (uint w = 0u; w < 2u; w++) {
            for (uint i = 0u; i < 4u; i++) {
                uint q = ((qls[w] >> (8u * i + nib)) & 0xFu) | (((qhs[w] >> (8u * i + 2u * c)) & 3u) << 4);
                v[4u * w + i] = dl * float(int(q) - 32);
            }
        }
        break;
    }
    default:
        for (uint i = 0u; i < 8u; i++) {
            v[i] = 0.0;
        }
    }
}
