// The `any` variant of the GPUs' mat-vec and tiled mat-mats (built without WTYPE): each weight
// segment's type is a specialization constant, SEG_T0..3 (constants 7-10, after every shape
// constant), which the host always sets to the op's segment types (`kernels::seg_types`; an
// unused segment repeats segment 0's type). The includer calls its dequantizer once per
// segment through PER_SEGMENT (common/per_segment.glsl), each call with that segment's index
// and type as constants: once the pipeline is specialized each call holds one type's code,
// where a type read at run time would carry every type's switch into the inner loop. Only the
// call of a row's segment runs.
#include "per_segment.glsl"
#ifndef WTYPE
layout(constant_id = 7) const uint SEG_T0 = 0u;
layout(constant_id = 8) const uint SEG_T1 = 0u;
layout(constant_id = 9) const uint SEG_T2 = 0u;
layout(constant_id = 10) const uint SEG_T3 = 0u;
#endif
