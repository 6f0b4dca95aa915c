//! Inference engines behind one interface at the level of prefill / decode / sample: `cpu`
//! (the reference and the Pi's fallback) and `vulkan` (the only module that imports `ash`).
