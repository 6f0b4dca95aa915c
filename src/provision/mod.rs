//! `pigpu setup`'s machinery: probe (read-only facts) → plan (pure data) → execute (effects
//! through `sys`, with rollback). Filled in by the setup work.
