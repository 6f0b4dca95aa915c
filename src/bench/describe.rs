//! What a bench row says about the model and when it ran: llama-bench's model description
//! (`llama 135M Q4_1`) and RFC 3339 timestamps, without a date library.

use crate::model::Model;

/// llama.cpp's names for `general.file_type` (`llama_ftype`), used in the model column.
fn ftype_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// `<arch> <size> <ftype>` as llama-bench describes a model, e.g. `llama 135M Q4_1`. The size
/// is `general.size_label` when the file has one, else derived from the parameter count.
pub fn describe_model(model: &Model, n_params: u64) -> String {
    let f = &model.file;
    let arch = model.config.arch.name();
    let size = match f.get_str("general.size_label").ok().flatten() {
        Some(s) => s.to_string(),
        None if n_params >= 1_000_000_000 => format!("{}B", (n_params as f64 / 1e9).round()),
        None => format!("{}M", (n_params as f64 / 1e6).round()),
    };
    let ftype = match f
        .get_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(ftype_name)
    {
        Some(n) => n.to_string(),
        None => {
            // No (known) file type: name the most common weight type, as a hint.
            let mut counts = std::collections::BTreeMap::new();
            for t in f.tensors().iter().filter(|t| t.shape.len() > 1) {
                *counts.entry(t.ty.name()).or_insert(0u64) += t.bytes;
            }
            counts
                .into_iter()
                .max_by_key(|(_, b)| *b)
                .map_or("?".into(), |(n, _)| n.to_string())
        }
    };
    format!("{arch} {size} {ftype}")
}

/// The current time as `2026-12-04T22:35:13Z`.
pub fn now_rfc3339() -> String {
    crate::sys::clock::utc(crate::sys::clock::since_epoch().as_secs())
}
