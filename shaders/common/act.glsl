// Gate activations of the GLU feed-forward (F_GLU): SiLU (SwiGLU) by default, GELU in its tanh
// form (GeGLU, gemma) with F_GELU. The tanh argument is clamped: tanh is ±1 to f32 precision
// well before ±10, and some implementations return NaN for exp overflow inside tanh.
#define F_GELU 16u
float glu_act(float v, bool gelu) {
    if (gelu) {
        const float u = clamp(0.7978845608 * v * (1.0 + 0.044715 * v * v), -10.0, 10.0);
        return 0.5 * v * (1.0 + tanh(u));
    }
    return v / (1.0 + exp(-v));
}
