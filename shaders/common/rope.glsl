// RoPE of one element, shared by rope_kv.comp and attention.comp's ROPE variant (decode
// attention with the rotation and the KV write folded in). The including shader declares
// `qkv` (the fused QKV projection, f32) and `inv_freq` (per rotated pair j: freq_scale *
// base^(-2j/n_rot) / freq_factor[j], computed on the host the way the CPU engine does, so both
// rotate by the same angles). Styles: NORM rotates pairs (2i, 2i+1) (llama), NEOX pairs
// (i, i+n_rot/2) (qwen2).

const float TWO_PI = 6.283185307179586;

// Cosine and sine of rotated pair j's angle at position p.
vec2 rope_cos_sin(uint j, uint p) {
    float ang = float(p) * inv_freq[j];
    ang -= TWO_PI * floor(ang / TWO_PI + 0.5);
    return vec2(cos(ang), sin(ang));
}

// The pair (xa, xb) rotated by the angle whose cosine and sine are `cs`.
vec2 rope_pair(float xa, float xb, vec2 cs) {
    return vec2(xa * cs.x - xb * cs.y, xa * cs.y + xb * cs.x);
}

// Element i of the head that starts at `hb` in qkv, rotated for position p (elements from
// n_rot on are not rotated).
float rope_rotated(uint hb, uint i, uint p, uint n_rot, bool neox) {
    if (i >= n_rot) {
        return qkv[hb + i];
    }
    uint j, a, b;
    bool first;
    if (neox) {
        uint half_ = n_rot / 2u;
        j = i % half_;
        first = i < half_;
        a = first ? i : i - half_;
        b = a + half_;
    } else {
        j = i / 2u;
        first = (i & 1u) == 0u;
        a = i & ~1u;
        b = a + 1u;
    }
    const vec2 r = rope_pair(qkv[hb + a], qkv[hb + b], rope_cos_sin(j, p));
    return first ? r.x : r.y;
}
