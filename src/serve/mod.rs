//! `pigpu serve`: an OpenAI-compatible HTTP server over the engines `run` uses. `api` reads and
//! checks requests, `slots` is the bounded queue, `schedule` runs jobs on `--parallel` slots
//! (batched decode on the CPU engine), `http` is the axum side (routes, auth, JSON and
//! event-stream replies), `metrics` the Prometheus counters. Stop strings and the JSON
//! constraint come from `session`, shared with `run`. docs/serve.md describes it from outside.

pub mod api;
pub mod error;
pub mod http;
pub mod metrics;
pub mod schedule;
pub mod slots;
