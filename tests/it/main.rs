//! pigpu's one integration-test binary. Each area has its own module; `util` holds the helpers
//! (running the built binary, locating cached test models).

mod archs;
mod bench;
mod chat;
mod cli;
mod compat;
mod completions;
mod constrain;
mod cpu_engine;
mod doctor;
mod doctor_held_out;
mod doctor_platform;
mod engines;
mod fake_root;
mod fuzz;
mod gguf;
mod http;
mod hub;
mod imports;
mod inspect;
mod logging;
mod mapped;
mod memory;
mod perplexity;
mod pty;
mod quant;
mod robust;
mod run;
mod serve;
mod serve_cache;
mod setup;
mod shapes;
mod tokenizer;
mod util;
mod vulkan;
