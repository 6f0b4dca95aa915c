//! Flags shared by the commands that load a model (`run`, `perplexity`, `bench`) and their one
//! mapping onto library types: `--backend` onto `engine::Backend`, `--device` plus the engine
//! knobs from the environment (`PIGPU_DEVICE`, `PIGPU_VK_*`, `PIGPU_CPU_ISA`, read once by
//! `cmd::engine_tuning`) onto `SessionOptions` (with the progress display), the sampling flags
//! onto `SamplingParams`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::engine::{self, Backend, EngineTuning, SamplingParams};
use crate::session::{Session, SessionOptions};

/// `--backend`: which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The CPU engine.
    Cpu,
    /// The Vulkan engine (a GPU).
    Vulkan,
    /// Vulkan when a usable GPU is found, else the CPU (saying so on stderr).
    Auto,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Vulkan => Backend::Vulkan,
            BackendArg::Auto => Backend::Auto,
        }
    }
}

/// The engine flags every model-loading command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Which engine runs the model: cpu, vulkan, or auto (a usable GPU if present, else the CPU).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// The Vulkan device, by index or part of its name (default: $PIGPU_DEVICE, else the best
    /// GPU; CPU implementations like lavapipe and the Pi's V3D are used only when named here).
    #[arg(long, value_name = "INDEX|NAME")]
    pub device: Option<String>,
}

impl EngineArgs {
    /// The engine `--backend` asks for.
    pub fn backend(&self) -> Backend {
        self.backend.into()
    }

    /// The engine knobs from the environment (`PIGPU_*`; malformed values are errors).
    pub fn tuning(&self) -> Result<EngineTuning> {
        super::engine_tuning()
    }

    /// The device selector as the engine applies it: `--device`, else `PIGPU_DEVICE`.
    pub fn selector(&self, tuning: &EngineTuning) -> Option<String> {
        self.device.clone().or_else(|| tuning.vulkan.device.clone())
    }

    /// Session options with these engine flags and the environment's knobs.
    pub fn session(
        &self,
        ctx: Option<usize>,
        threads: Option<usize>,
        kv_f16: bool,
    ) -> Result<SessionOptions> {
        Ok(SessionOptions {
            backend: self.backend(),
            ctx,
            threads,
            kv_f16,
            device: self.device.clone(),
            tuning: self.tuning()?,
            progress: super::progress::Display::stderr().reporter(),
        })
    }
}

/// The sampling flags of `run` (and chat).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p × the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
}

impl SamplingArgs {
    /// Checks that the settings make sense before anything is loaded.
    pub fn params(&self) -> Result<SamplingParams> {
        let a = self;
        if !(a.temp >= 0.0 && a.temp.is_finite()) {
            bail!("--temp {} must be a number ≥ 0", a.temp);
        }
        if !(0.0..=1.0).contains(&a.top_p) {
            bail!("--top-p {} must be in 0..=1", a.top_p);
        }
        if !(0.0..=1.0).contains(&a.min_p) {
            bail!("--min-p {} must be in 0..=1", a.min_p);
        }
        if !(a.repeat_penalty > 0.0 && a.repeat_penalty.is_finite()) {
            bail!("--repeat-penalty {} must be > 0", a.repeat_penalty);
        }
        Ok(SamplingParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
        })
    }
}

/// Loads a session (the warm-up and upload drawn as `opts.progress` says) and logs what was
/// loaded (at info level).
pub fn load(path: &Path, opts: &SessionOptions) -> Result<Session> {
    let s = Session::load(path, opts)?;
    log::info!("{}", s.summary());
    Ok(s)
}

/// `run --list-devices`: every Vulkan device and why it is or is not the one `run` would use.
pub fn list_devices(e: &EngineArgs, json: bool) -> Result<Outcome> {
    let tuning = e.tuning()?;
    let selector = e.selector(&tuning);
    let env = &tuning.vulkan.vulkan_env;
    let devs = engine::vulkan::list_devices_with(selector.as_deref(), env)
        .context("listing Vulkan devices")?;
    if json {
        println!("{}", serde_json::to_string(&devs)?);
    } else if devs.is_empty() {
        // The same cause doctor's vulkan check and the engine's "no device" error give.
        match crate::platform::vulkan_no_device_cause(env) {
            Some(cause) => println!("no Vulkan devices: {cause}"),
            None => println!("no Vulkan devices (the loader found none)"),
        }
    } else {
        for d in &devs {
            println!(
                "{} {}: {} [{:?}, Vulkan {}, {} MiB, subgroup {}{}]\n    {}",
                if d.chosen { "*" } else { " " },
                d.index,
                d.name,
                d.kind,
                d.api_version,
                d.memory_mib,
                d.subgroup_size,
                if d.driver.is_empty() {
                    String::new()
                } else {
                    format!(", {}", d.driver)
                },
                d.reason
            );
        }
    }
    if !json && !devs.is_empty() && !devs.iter().any(|d| d.chosen) {
        if let Some(cause) = crate::platform::vulkan_no_device_cause(env) {
            println!("no GPU to choose; a Vulkan driver cannot load: {cause}");
        }
    }
    Ok(if devs.iter().any(|d| d.chosen) {
        Outcome::Ok
    } else {
        Outcome::Problems
    })
}
