//! `pigpu doctor`'s checks (one file per area), findings, log signatures and report rendering.
//! Filled in by the doctor work.
