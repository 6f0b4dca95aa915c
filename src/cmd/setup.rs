//! `pigpu setup`: provision the patched NVIDIA open kernel modules, the userspace and the boot
//! config on a Raspberry Pi 5 / CM5 (or on a mounted image with `--root`). Wires argument
//! parsing, prompts, probe → plan → execute, `--undo` and the doctor checks together.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::Outcome;
use crate::doctor;
use crate::provision::execute::{self, Event, Exec, ExecError, RunEnd};
use crate::provision::host::{Host, SystemHost};
use crate::provision::manifest::Manifest;
use crate::provision::plan::{self, Options, Persist};
use crate::provision::probe::{self, Probe};
use crate::provision::state::{self, Record};
use crate::provision::transaction;
use crate::sys::command::ProgramPath;
use crate::sys::download::Downloader;
use crate::sys::prompt::{Prompter, Prompts};
use crate::sys::Root;

/// Arguments of `pigpu setup`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu setup --dry-run                 show what would be done, change nothing
  sudo pigpu setup                      ask the choices, show the plan, ask before applying
  sudo pigpu setup --yes                take the defaults: PCIe Gen 2, DKMS, newest 4K kernel
  sudo pigpu setup --undo               remove what pigpu installed, restore changed files
  sudo pigpu setup --root /mnt/img --yes    provision a mounted Raspberry Pi OS image
  sudo pigpu setup --yes --no-kernel-hold --no-apt-pin   without the kernel hold and the APT pin

A step that needs a reboot ends the run; run `pigpu setup` again after rebooting and it resumes.
Defaults taken by --yes: the manifest marked default, PCIe Gen 2 (or what config.txt already
sets), DKMS (installed when missing), all jobs = CPU count. Always, unless opted out: the kernel
packages held (apt-mark hold) and Debian's NVIDIA packages pinned to priority -1. See docs/setup.md.")]
pub struct Args {
    /// Print the plan and change nothing (allowed without root).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON: {"steps": [{"id", "action", "detail", "reboot"}], ...}.
    #[arg(long)]
    pub json: bool,
    /// Do not ask: apply the plan and take the documented defaults for every choice.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Remove everything pigpu installed and restore the files it changed.
    #[arg(long)]
    pub undo: bool,
    /// Provision the system tree at DIR instead of / (a mounted image, a test tree).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Kernel release to build for (default: the newest 4K-page kernel under ROOT/lib/modules).
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,
    /// Driver manifest to use instead of the built-in ones (a mirror or an air-gapped copy).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Take artifacts the manifest does not pin; their digests are printed and recorded.
    #[arg(long)]
    pub accept_unpinned: bool,
    /// PCIe generation for the external connector (3 is faster but not certified).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=3))]
    pub pcie_gen: Option<u32>,
    /// How the modules survive kernel updates.
    #[arg(long, value_enum)]
    pub persist: Option<PersistArg>,
    /// Do not `apt-mark hold` the kernel packages (by default they are held, so an upgrade
    /// cannot leave the Pi with a kernel that has no NVIDIA modules).
    #[arg(long)]
    pub no_kernel_hold: bool,
    /// Do not write the APT pin that keeps Debian's nvidia-*/libnvidia-*/libcuda1/
    /// firmware-nvidia-gsp packages (priority -1) from replacing NVIDIA's userspace.
    #[arg(long)]
    pub no_apt_pin: bool,
    /// Parallel compile jobs (default: the number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Download cache (default: ROOT/var/cache/pigpu).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `--persist`: the command line's names for [`Persist`] (the library type has no clap in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PersistArg {
    /// Register the sources with DKMS (installs `dkms` when missing); the default.
    Dkms,
    /// Hold the kernel packages so apt does not replace the kernel the modules were built for.
    Hold,
    /// Neither: rebuild by running `pigpu setup` again after a kernel update.
    None,
}

impl From<PersistArg> for Persist {
    fn from(a: PersistArg) -> Persist {
        match a {
            PersistArg::Dkms => Persist::Dkms,
            PersistArg::Hold => Persist::Hold,
            PersistArg::None => Persist::None,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut prompts = Prompts::new(args.yes);
    // PATH is read here, once: setup finds `depmod` and `patch` through it.
    let mut host = SystemHost {
        programs: ProgramPath::new(std::env::var_os("PATH").as_deref()),
    };
    run_with(args, &mut host, &mut prompts)
}

fn pick_manifest(args: &Args, prompts: &mut dyn Prompter) -> anyhow::Result<Manifest> {
    if let Some(p) = &args.manifest {
        return Ok(Manifest::load(p)?);
    }
    let mut all = Manifest::builtin();
    if all.len() == 1 || args.dry_run {
        return Ok(all.remove(0));
    }
    let labels: Vec<String> = all
        .iter()
        .map(|m| format!("{} — {}", m.driver, m.summary))
        .collect();
    let i = prompts.select("NVIDIA driver version", &labels, 0)?;
    Ok(all.remove(i))
}

/// The same as `run`, with the host effects and the prompts injected (tests pass a
/// `provision::recording::RecordingHost` and `--yes`).
pub fn run_with(
    args: Args,
    host: &mut dyn Host,
    prompts: &mut dyn Prompter,
) -> anyhow::Result<Outcome> {
    let root = target_root(&args)?;
    // A run that may change the root goes on to its end when stdout is closed (`| head`): it
    // finishes (or rolls back) and its exit status says which, rather than exiting 0 half-way.
    if !args.dry_run {
        crate::sys::out::keep_going_when_closed();
    }
    // Any run that may change the root holds its lock until it returns (`--undo` included).
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::provision::lock::acquire(&root)?)
    };
    if args.undo {
        return undo(&args, &root, host, prompts);
    }
    let manifest = pick_manifest(&args, prompts)?;
    roll_back_unfinished_run(&args, &root, host)?;

    let probe = probe::probe(&root, &manifest, args.kernel_release.as_deref());
    if !args.json {
        print!("{}", describe(&probe));
    }
    let options = choose(&args, &probe, prompts)?;
    let plan = plan::plan(&probe, &manifest, &options)?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
    } else {
        print!("{}", plan.render());
    }
    if args.dry_run {
        return Ok(if plan.blocked.is_some() {
            Outcome::Problems
        } else {
            Outcome::Ok
        });
    }
    if let Some(b) = &plan.blocked {
        eprintln!("pigpu: {b}");
        return Ok(Outcome::Problems);
    }
    if plan.steps.is_empty() {
        return Ok(finish(&root, probe.running_kernel.is_some()));
    }
    check_writable(&root, &plan)?;
    if !prompts.confirm("Apply this plan?", true)? {
        eprintln!("pigpu: nothing changed");
        return Ok(Outcome::Ok);
    }
    apply(&args, &root, &manifest, &probe, &plan, &options, host)
}

/// The system tree setup works on: `--root` (a directory, its path fit for make and the shell
/// where the run may change it), else the live system, which only root may change.
fn target_root(args: &Args) -> anyhow::Result<Root> {
    let root = match &args.root {
        Some(d) => {
            if !d.is_dir() {
                bail!("--root {}: not a directory", d.display());
            }
            Root::new(
                d.canonicalize()
                    .with_context(|| format!("--root {}", d.display()))?,
            )
        }
        None => Root::live(),
    };
    if !args.dry_run && !root.is_live() {
        check_root_path(root.dir())?;
    }
    let as_root = nix::unistd::geteuid().is_root();
    if root.is_live() && !as_root && !args.dry_run {
        bail!("pigpu setup changes the system and must run as root (sudo pigpu setup); --dry-run shows the plan without root");
    }
    Ok(root)
}

/// Reads the state; a run that died half-way is rolled back before anything else (not on a
/// dry run), each change that could not be reversed named on stderr.
fn roll_back_unfinished_run(args: &Args, root: &Root, host: &mut dyn Host) -> anyhow::Result<()> {
    let st = state::load(root).map_err(|e| {
        anyhow::anyhow!(
            "{e}; its copy {} is unusable too, so pigpu cannot tell what it installed. Put back a \
             good copy, or move both away to start over (then `--undo` cannot remove the earlier install)",
            root.path(state::STATE_COPY).display()
        )
    })?;
    if !st.in_progress.is_empty() && !args.dry_run {
        eprintln!(
            "pigpu: the previous run did not finish; rolling back its {} change(s)",
            st.in_progress.len()
        );
        let log = root.path(format!("{}/rollback.log", state::LOG_DIR));
        let tx = transaction::Transaction::begin(root, st);
        let (_, problems) = tx.rollback(host, &log);
        for p in problems {
            eprintln!("  could not roll back: {p}");
        }
    }
    Ok(())
}

/// Runs the confirmed `plan` (downloads into the cache, a line per step on stderr) and says how
/// it ended: done, stopped for a reboot, or blocked.
fn apply(
    args: &Args,
    root: &Root,
    manifest: &Manifest,
    probe: &Probe,
    plan: &plan::Plan,
    options: &Options,
    host: &mut dyn Host,
) -> anyhow::Result<Outcome> {
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| root.path("/var/cache/pigpu"));
    let display = super::progress::Display::stderr();
    let downloader = Downloader::new(cache, display.reporter())?;
    let events = |e: Event| show(&display, e);
    let mut exec = Exec {
        root,
        manifest,
        host,
        downloader: &downloader,
        events: &events,
        choices: state::Choices {
            pcie_gen: options.pcie_gen,
            persist: options.persist,
            hold_kernel: options.hold_kernel,
            apt_pin: options.apt_pin,
        },
    };
    match exec.run(plan, probe) {
        Ok(RunEnd::Complete { ran }) => {
            eprintln!("pigpu: done ({} step(s): {})", ran.len(), ran.join(", "));
            Ok(finish(root, probe.running_kernel.is_some()))
        }
        Ok(RunEnd::Reboot { step, .. }) => {
            eprintln!(
                "pigpu: step {step} needs a reboot. Reboot now (sudo reboot), then run `pigpu setup` again: it continues where it stopped."
            );
            Ok(Outcome::Ok)
        }
        Err(ExecError::Blocked(b)) => {
            eprintln!("pigpu: {b}");
            Ok(Outcome::Problems)
        }
        Err(e) => Err(e.into()),
    }
}

/// Renders an executor event on stderr: a line per step and note, a spinner (on a terminal)
/// while a long command runs.
fn show(display: &super::progress::Display, e: Event) {
    match e {
        Event::Step {
            index,
            count,
            id,
            action,
        } => display.println(&format!("==> [{index}/{count}] {id}: {action}")),
        Event::Note(line) => display.println(&format!("    {line}")),
        Event::Busy(msg) => display.spinner(msg),
        Event::Idle => display.clear(),
    }
}

/// The root's path reaches `make` (Kbuild variables, expanded inside shell recipes), so it may
/// only hold characters no shell or make treats specially.
fn check_root_path(dir: &std::path::Path) -> anyhow::Result<()> {
    let text = dir.to_string_lossy();
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._-+,@".contains(*c)))
    {
        bail!(
            "--root {}: the path holds {c:?}; the kernel build passes it to make and the shell, so \
             use a directory whose path has only letters, digits and / . _ - + , @ (mount or link \
             the image at, say, /mnt/pi)",
            dir.display()
        );
    }
    Ok(())
}

/// Before anything runs: every file the plan edits in place (`config.txt`) must be writable,
/// so a read-only or immutable file stops the run now, not after a long build.
fn check_writable(root: &Root, plan: &plan::Plan) -> anyhow::Result<()> {
    for step in &plan.steps {
        let path = match &step.op {
            plan::Op::BootConfig { path, .. } => path,
            plan::Op::Kernel4k { config, .. } => config,
            _ => continue,
        };
        let host = root.inside(path)?;
        let probe = host.with_file_name(".pigpu-write-check");
        let result = std::fs::OpenOptions::new()
            .append(true)
            .open(&host)
            .and_then(|_| std::fs::write(&probe, b""))
            .and_then(|_| std::fs::remove_file(&probe));
        if let Err(e) = result {
            bail!(
                "{} cannot be written ({e}); nothing was changed. Make it writable (remount /boot \
                 read-write, `chattr -i`) and run again",
                host.display()
            );
        }
    }
    Ok(())
}

/// The choices: from flags, else asked on a terminal, else (`--yes`) the defaults.
fn choose(args: &Args, probe: &Probe, prompts: &mut dyn Prompter) -> anyhow::Result<Options> {
    let provisioned = !probe.state.records.is_empty();
    let current_gen = if probe.boot.pciex1_gen == Some(3) {
        3
    } else {
        2
    };
    let saved = probe.state.choices.clone();
    let pcie_gen = match args.pcie_gen {
        Some(g) => g,
        None if saved.is_some() => saved.as_ref().map_or(2, |c| c.pcie_gen),
        None if provisioned || args.dry_run => current_gen,
        None => {
            let opts = vec![
                "Gen 2 (5 GT/s): the certified speed, always works".to_string(),
                "Gen 3 (8 GT/s): faster model loading; not certified, fall back if the link is flaky".to_string(),
            ];
            if prompts.select(
                "PCIe speed for the external connector",
                &opts,
                (current_gen - 2) as usize,
            )? == 1
            {
                3
            } else {
                2
            }
        }
    };
    let previous = probe.state.records.iter().find_map(|r| match r {
        Record::Dkms { .. } => Some(Persist::Dkms),
        Record::Hold { .. } => Some(Persist::Hold),
        _ => None,
    });
    let persist = match (args.persist.map(Persist::from), previous) {
        (Some(p), _) => p,
        (None, _) if saved.is_some() => saved.as_ref().map_or(Persist::Dkms, |c| c.persist),
        (None, Some(p)) => p,
        (None, None) if provisioned || args.dry_run => Persist::Dkms,
        (None, None) => {
            let opts = vec![
                "DKMS: rebuild the modules automatically for every new kernel".to_string(),
                "Hold the kernel packages: apt keeps the kernel the modules were built for"
                    .to_string(),
                "Neither: run `pigpu setup` again after each kernel update".to_string(),
            ];
            match prompts.select(
                "Keep the modules working across kernel updates with",
                &opts,
                0,
            )? {
                0 => Persist::Dkms,
                1 => Persist::Hold,
                _ => Persist::None,
            }
        }
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    // The opt-outs stick: a rerun (or the run after a reboot) without the flag keeps what the
    // first run chose, as the state records it.
    Ok(Options {
        pcie_gen,
        persist,
        jobs,
        accept_unpinned: args.accept_unpinned,
        hold_kernel: !args.no_kernel_hold && saved.as_ref().is_none_or(|c| c.hold_kernel),
        apt_pin: !args.no_apt_pin && saved.as_ref().is_none_or(|c| c.apt_pin),
    })
}

fn describe(p: &Probe) -> String {
    let mut s = format!("System: {}", p.root.display());
    s.push_str(&format!(
        "\n  board {}, {}\n",
        p.model.as_deref().unwrap_or("unknown"),
        p.os.as_deref().unwrap_or("OS unknown")
    ));
    s.push_str(&format!(
        "  running kernel {}, boots {}\n",
        p.running_kernel.as_deref().unwrap_or("(not running)"),
        p.kernel_image
    ));
    for k in &p.kernels {
        s.push_str(&format!(
            "  kernel {}: {}, {}\n",
            k.release,
            k.page_size
                .map_or("page size unknown".to_string(), |n| format!(
                    "{}K pages",
                    n / 1024
                )),
            if k.build_tree.is_some() {
                "headers installed"
            } else {
                "no headers"
            }
        ));
    }
    if p.gpus.is_empty() {
        s.push_str("  no NVIDIA GPU on the PCI bus\n");
    }
    for g in &p.gpus {
        s.push_str(&format!(
            "  GPU {} at {} ({}), driver {}\n",
            g.id,
            g.address,
            if g.supported {
                "Turing or newer"
            } else {
                "pre-Turing: unsupported"
            },
            g.driver.as_deref().unwrap_or("none")
        ));
    }
    if let Some(f) = p.free_mib {
        s.push_str(&format!("  {f} MiB free\n"));
    }
    s
}

/// After a complete run: the doctor's checks, when the root is a running system (an image that
/// is not booted has no devices, kernel log or loaded modules to check).
fn finish(root: &Root, running: bool) -> Outcome {
    if !running {
        eprintln!(
            "pigpu: setup is complete for {}. It is not a running system, so the doctor checks are \
             left for the Pi: boot it and run `pigpu doctor`.",
            root.dir().display()
        );
        return Outcome::Ok;
    }
    let mut host = doctor::patient::Patient::new(root.clone());
    host.vulkan_env = super::vulkan_env();
    let report = doctor::diagnose_system(&host, &[]);
    let title = if root.is_live() {
        "this system, after setup".to_string()
    } else {
        format!("the system under {}, after setup", root.dir().display())
    };
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", doctor::report::human(&report, &title, colour));
    if report.has_failures() {
        eprintln!(
            "pigpu: setup is complete, but the doctor found problems (above, each with its fix)"
        );
        Outcome::Problems
    } else {
        Outcome::Ok
    }
}

fn undo(
    args: &Args,
    root: &Root,
    host: &mut dyn Host,
    prompts: &mut dyn Prompter,
) -> anyhow::Result<Outcome> {
    let st = state::load(root)?;
    let mut all = st.records.clone();
    all.extend(st.in_progress.iter().cloned());
    if all.is_empty() {
        println!("pigpu has installed nothing under {}", root.dir().display());
        return Ok(Outcome::Ok);
    }
    println!("Undo: pigpu will reverse, newest first:");
    for r in all.iter().rev() {
        println!("  {}", describe_record(r));
    }
    if args.dry_run {
        return Ok(Outcome::Ok);
    }
    if !prompts.confirm("Undo all of this?", true)? {
        eprintln!("pigpu: nothing changed");
        return Ok(Outcome::Ok);
    }
    let problems = execute::undo(root, &st, host);
    if problems.is_empty() {
        eprintln!("pigpu: undone. Packages pigpu installed are marked for `apt autoremove`; reboot to unload the modules and boot the previous kernel.");
        Ok(Outcome::Ok)
    } else {
        for p in &problems {
            eprintln!("pigpu: {p}");
        }
        Ok(Outcome::Problems)
    }
}

fn describe_record(r: &Record) -> String {
    match r {
        Record::File {
            path,
            backup: Some(_),
            ..
        } => format!("restore {path} (original kept)"),
        Record::File {
            path, backup: None, ..
        } => format!("remove {path}"),
        Record::Dir { path } => format!("remove {path}/"),
        Record::Packages { names } => {
            format!("mark {} as automatically installed", names.join(" "))
        }
        Record::Hold { names } => format!("apt-mark unhold {}", names.join(" ")),
        Record::Dkms { module, version } => format!("dkms remove {module}/{version} --all"),
        Record::Userspace { version, uninstall } => format!(
            "uninstall NVIDIA userspace {version} ({})",
            uninstall.join(" ")
        ),
        Record::Modules {
            driver, release, ..
        } => format!("forget modules {driver} for {release}, depmod"),
        Record::MadeDir { path } => format!("remove {path}/ if empty (pigpu created it)"),
        Record::DepmodIndex { release, .. } => {
            format!("remove the module index of {release} (pigpu's depmod created it)")
        }
    }
}
