//! pigpu as a library: the binary in `main.rs` is a thin shell over these modules, and the
//! integration tests in `tests/it/` drive the same code.

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod doctor;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod provision;
pub mod quant;
pub mod sys;
