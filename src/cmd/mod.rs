//! One file per subcommand. This is the only layer that wires the other modules together:
//! `gguf`, `model`, `engine`, `session`, `doctor`, `provision` and `sys` do not know about each
//! other's command-line flags. `cli.rs` lists the subcommands and dispatches to them; nothing
//! here imports it back.

pub mod bench;
pub(crate) mod chat;
pub mod compat;
pub mod completions;
pub mod doctor;
pub mod inspect;
pub mod list;
pub mod logging;
pub mod model_args;
pub mod perplexity;
pub mod progress;
pub mod pull;
pub mod rm;
pub mod run;
pub mod run_shared;
pub mod serve;
pub mod setup;
pub mod shape;
pub mod tokenize;

use std::process::ExitCode;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: the command ran and found problems (doctor findings, failed checks).
    Problems,
    /// Exit 130 (128 + SIGINT, as a shell reports it): stopped by Ctrl-C after printing what
    /// finished (`pigpu bench`).
    Interrupted,
}

impl Outcome {
    /// The process exit status for this outcome: 0, 1 or 130.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Problems => ExitCode::from(1),
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

/// The engines' knobs from the environment (`PIGPU_DEVICE`, `PIGPU_VK_*`, `PIGPU_CPU_ISA`, the
/// pipeline cache's directory; docs/vulkan.md "Tuning"), and the Vulkan loader's variables
/// ([`vulkan_env`]): read here, once, and passed down.
pub fn engine_tuning() -> anyhow::Result<crate::engine::EngineTuning> {
    let mut t = crate::engine::EngineTuning::from_lookup(|name| std::env::var(name).ok())?;
    t.vulkan.vulkan_env = vulkan_env();
    Ok(t)
}

/// `VK_DRIVER_FILES` / `VK_ICD_FILENAMES` as the Vulkan loader in this process reads them, for
/// doctor's Vulkan check and the "no device" cause (`platform::vulkan::VulkanEnv`).
pub fn vulkan_env() -> crate::platform::vulkan::VulkanEnv {
    crate::platform::vulkan::VulkanEnv::from_lookup(|name| std::env::var_os(name))
}

/// The most text `run`, `tokenize` and `perplexity` take from stdin or a file: far more than
/// any context holds, and a bound on what an endless input (`< /dev/zero`) can take.
pub const MAX_TEXT_INPUT: u64 = 64 << 20;

/// Reads standard input, at most [`MAX_TEXT_INPUT`] bytes (more is an error, not an allocation).
pub fn read_stdin_capped(what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_TEXT_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("reading {what} from standard input: {e}"))?;
    if buf.len() as u64 > MAX_TEXT_INPUT {
        anyhow::bail!(
            "{what} on standard input is longer than {} MiB; that is more text than any model's context holds",
            MAX_TEXT_INPUT >> 20
        );
    }
    Ok(buf)
}
