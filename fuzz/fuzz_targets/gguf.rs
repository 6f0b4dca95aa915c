//! Fuzzes the GGUF reader: any bytes must give a parsed file or an error, never a panic, an
//! out-of-bounds read or a huge allocation (libFuzzer's -malloc_limit_mb catches those). A file
//! that parses is then used the way pigpu uses one: every accessor, every tensor's bytes, and
//! dequantization of the small tensors.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pigpu::gguf::{GgufFile, ValueType};
use pigpu::quant::{dequantize_to_vec, is_supported};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes("fuzz.gguf", data.to_vec()) else {
        return;
    };
    for (key, value) in f.metadata() {
        let _ = value.to_json(Some(8)).to_string();
        let _ = value.to_string();
        let _ = f.get_u32(key);
        let _ = f.get_u64(key);
        let _ = f.get_f32(key);
        let _ = f.get_str(key);
        let _ = f.get_bool(key);
        let _ = f.get_array(key, ValueType::String);
    }
    let _ = f.architecture();
    for t in f.tensors() {
        let bytes = f.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.bytes);
        assert!(f.data_offset() + t.offset + t.bytes <= f.file_len());
        let _ = (t.n_rows(), t.row_bytes());
        let n = t.n_elements();
        if is_supported(t.ty) && n <= 1 << 16 {
            let v = dequantize_to_vec(t.ty, bytes, n as usize).expect("sizes were checked");
            assert_eq!(v.len() as u64, n);
        }
    }
});
