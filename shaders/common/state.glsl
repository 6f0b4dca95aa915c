// Layout of the device-resident decoding state (a uint buffer), shared with
// src/engine/vulkan/kernels.rs (S_TOKEN, S_BAD, STATE_WORDS). The GPU advances it itself, so the
// per-token command buffer can be replayed unchanged.
#define S_NPAST 0u   // tokens in the KV cache
#define S_POS 1u     // position of the first token of the batch being run
#define S_TOKEN 2u   // the last sampled token (read by the embedding lookup when decoding)
#define S_NHIST 3u   // tokens ever appended to the history ring
#define S_HIST 4u    // ring of the last HIST tokens (repetition penalty)
#define HIST 256u
#define S_BAD (S_HIST + HIST) // the sampler's verdict on its logits: 0 finite, bit 0 NaN, bit 1 infinite
