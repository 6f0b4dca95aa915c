//! Fuzzes dequantization on arbitrary bytes: the first byte picks the type, the rest is data.
//! Whole blocks must decode; any other length must be an error; nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pigpu::quant::{dequantize, dequantize_to_vec, is_supported, GgmlType};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ty = GgmlType::ALL[pick as usize % GgmlType::ALL.len()];
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let whole = bytes.len() / ts * ts;
    let n = whole / ts * bs;
    match dequantize_to_vec(ty, &bytes[..whole], n) {
        Ok(v) => {
            assert!(is_supported(ty));
            assert_eq!(v.len(), n);
        }
        Err(_) => assert!(!is_supported(ty)),
    }
    // A length that is not whole blocks, or an output of the wrong size, is an error.
    if bytes.len() != whole {
        assert!(dequantize_to_vec(ty, bytes, n).is_err());
    }
    let mut out = vec![0f32; n + bs];
    assert!(dequantize(ty, &bytes[..whole], &mut out).is_err());
});
