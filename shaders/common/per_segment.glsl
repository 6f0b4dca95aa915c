// PER_SEGMENT(seg, T0, T1, T2, T3, STEP) runs STEP(i, Ti) for the one segment `seg` names, the
// segment's index and type both constants: the `any` variants' way of calling a dequantizer
// once per segment, so that once the pipeline is specialized each call holds one type's code
// (common/seg_types.glsl says why). STEP is a macro of the includer's, e.g. one that
// dequantizes a unit of the row into the includer's variables.
#define PER_SEGMENT(seg, T0, T1, T2, T3, STEP) \
    if ((seg) == 0u) {                          \
        STEP(0u, T0);                           \
    } else if ((seg) == 1u) {                   \
        STEP(1u, T1);                           \
    } else if ((seg) == 2u) {                   \
        STEP(2u, T2);                           \
    } else {                                    \
        STEP(3u, T3);                           \
    }
