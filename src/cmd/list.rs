//! `pigpu list`: the GGUF models in the Hugging Face cache (pulled by pigpu or by other tools
//! that share the cache), with name, size, last use and path; `--json` for scripts.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::json;

use super::Outcome;
use crate::hub;
use crate::sys::clock::utc;

/// Arguments of `pigpu list`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu list
  pigpu list --json | jq -r '.[] | select(.quant == \"Q4_K_M\") | .path'

JSON: [{\"name\", \"repo\", \"quant\", \"file\", \"revision\", \"current\", \"size\", \"path\",
\"last_used\" (Unix seconds or null), \"last_used_utc\"}]. `current` is false for a file of an
older revision than the repo's refs/main. \"Last used\" is the file's access time, which pigpu
sets whenever a command opens the model by name.")]
pub struct Args {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// "5 minutes ago" style, for the table.
fn ago(then: Option<u64>, now: u64) -> String {
    let Some(t) = then else {
        return "-".into();
    };
    let s = now.saturating_sub(t);
    let (n, unit) = match s {
        0..=59 => return "just now".into(),
        60..=3_599 => (s / 60, "minute"),
        3_600..=86_399 => (s / 3_600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn size(n: u64) -> String {
    let mib = n as f64 / (1 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

pub(crate) fn run(a: Args) -> Result<Outcome> {
    let cfg = super::pull::hub_config()?;
    let models = hub::list(&cfg.cache);
    if a.json {
        let v: Vec<_> = models
            .iter()
            .map(|m| {
                let used = unix(m.last_used);
                json!({
                    "name": m.name(),
                    "repo": m.repo,
                    "quant": m.quant,
                    "file": m.file,
                    "revision": m.revision,
                    "current": m.current,
                    "size": m.size,
                    "path": m.path,
                    "last_used": used,
                    "last_used_utc": used.map(utc),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Outcome::Ok);
    }
    if models.is_empty() {
        eprintln!(
            "pigpu: no GGUF models in {} (get one with `pigpu pull ORG/NAME`)",
            cfg.cache.display()
        );
        return Ok(Outcome::Ok);
    }
    let now = unix(Some(SystemTime::now())).unwrap_or(0);
    let rows: Vec<[String; 4]> = models
        .iter()
        .map(|m| {
            let mut name = m.name();
            if !m.current {
                name.push_str(&format!(
                    " (old revision {})",
                    &m.revision[..m.revision.len().min(8)]
                ));
            }
            [
                name,
                size(m.size),
                ago(unix(m.last_used), now),
                m.path.display().to_string(),
            ]
        })
        .collect();
    let head = ["NAME", "SIZE", "LAST USED", "PATH"];
    let mut w = [0usize; 4];
    for r in rows
        .iter()
        .map(|r| r.each_ref().map(|s| s.as_str()))
        .chain([head])
    {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(head.map(str::to_string)).chain(rows) {
        println!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(Some(100), 100), "just now");
        assert_eq!(ago(Some(0), 120), "2 minutes ago");
        assert_eq!(ago(Some(0), 3_600), "1 hour ago");
        assert_eq!(ago(Some(0), 86_400 * 3), "3 days ago");
        assert_eq!(ago(None, 5), "-");
        assert_eq!(size(3 << 29), "1.5 GiB");
    }
}
