//! `pigpu setup`'s machinery: probe (read-only facts) → plan (pure data) → execute (effects
//! through `sys` and a [`host::Host`], inside a [`transaction::Transaction`] that rolls back).

pub mod bootconfig;
pub mod execute;
pub mod files;
pub mod gittree;
pub mod host;
pub mod kapi;
pub mod kbuild;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod probe;
#[cfg(any(test, feature = "testing"))]
pub mod recording;
pub mod state;
pub mod transaction;
