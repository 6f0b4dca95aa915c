//! All host access (files under a root, commands, kernel modules, PCI devices, downloads,
//! prompts) behind small types and traits, with real implementations and test ones, so that
//! doctor and setup can be tested against fake systems.

pub mod clock;
pub mod kmod;
pub mod log;
pub mod out;
pub mod pci;
pub mod root;

pub use root::Root;
pub mod command;
pub mod download;
pub mod group;
pub mod progress;
pub mod prompt;
pub mod sigbus;
pub mod stall;
