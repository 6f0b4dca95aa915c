//! The GGUF reader on the real test models.

use crate::util::{test_model, QWEN, SMOLLM};
use pigpu::gguf::GgufFile;
use pigpu::quant::GgmlType;

#[test]
fn smollm_opens_with_expected_shape() {
    let Some(p) = test_model(SMOLLM) else { return };
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(30));
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), Some(576));
    assert_eq!(f.tensors().len(), 272);
    let count = |t| f.tensors().iter().filter(|x| x.ty == t).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::Q8_0),
            count(GgmlType::F32)
        ),
        (210, 1, 61)
    );
    let last = f
        .tensors()
        .iter()
        .map(|t| f.data_offset() + t.offset + t.bytes)
        .max()
        .unwrap();
    assert!(last <= f.file_len() && f.file_len() - last < 64);
}

#[test]
fn qwen_opens_with_five_weight_types() {
    let Some(p) = test_model(QWEN) else { return };
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.architecture().unwrap(), "qwen2");
    let count = |t| f.tensors().iter().filter(|x| x.ty == t).count();
    assert_eq!(count(GgmlType::Q5_0), 133);
    assert_eq!(count(GgmlType::Q8_0), 13);
    assert_eq!(count(GgmlType::Q4_K), 12);
    assert_eq!(count(GgmlType::Q6_K), 12);
    assert_eq!(count(GgmlType::F32), 121);
    let vocab = f
        .get_array("tokenizer.ggml.tokens", pigpu::gguf::ValueType::String)
        .unwrap();
    assert_eq!(vocab.unwrap().len(), 151936);
}
