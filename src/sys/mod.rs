//! All host access (files under a root, commands, kernel modules, PCI devices, downloads,
//! prompts) behind small traits, with real implementations and test ones. Filled in by the
//! doctor and setup work.
