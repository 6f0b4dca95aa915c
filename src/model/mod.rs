//! Model layer: hyper-parameters from GGUF metadata, weights by tensor name, tokenizer, chat
//! template, sampler and the generation loop.

pub mod tokenizer;
