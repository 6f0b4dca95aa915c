//! The OpenAI request bodies pigpu understands, read field by field from JSON so that a wrong
//! type or value is a 400 naming the field; fields pigpu does not use are ignored, as clients
//! send many (`user`, `logprobs`, `presence_penalty`, ...).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::engine::SamplingParams;
use crate::model::chat::Message;

/// The server's limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_tokens` above this is refused; it is also the default.
    pub max_tokens: usize,
    /// Prompts longer than this (in tokens) are refused (the context is a second bound).
    pub max_prompt_tokens: usize,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

/// At most this many stop strings (OpenAI allows 4), each at most this many bytes.
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;

/// What is to be completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `/v1/chat/completions`: rendered with the model's chat template.
    Chat(Vec<Message>),
    /// `/v1/completions`: the prompt as text.
    Text(String),
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct Request {
    pub input: Input,
    pub params: SamplingParams,
    /// `None`: as many as the limit and the context allow.
    pub max_tokens: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// `response_format: {"type": "json_object"}`: the output is constrained to a JSON object.
    pub json: bool,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with only `usage`.
    pub include_usage: bool,
    /// `cache_prompt` (llama-server's field, default true): false feeds the whole prompt even
    /// when the slot's cache starts with it.
    pub cache_prompt: bool,
}

/// Reads `name` from the object as `T`; absent or `null` is `None`.
fn field<T: DeserializeOwned>(v: &Value, name: &str) -> Result<Option<T>, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => serde_json::from_value(x.clone())
            .map(Some)
            .map_err(|e| ApiError::invalid(Some(name), format!("`{name}`: {e}"))),
    }
}

/// A number in `lo..=hi` (also refusing NaN, which JSON cannot carry anyway).
fn ranged(v: &Value, name: &str, lo: f64, hi: f64, default: f64) -> Result<f32, ApiError> {
    let x: f64 = field(v, name)?.unwrap_or(default);
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid(
            Some(name),
            format!("`{name}` is {x}; it must be between {lo} and {hi}"),
        ));
    }
    Ok(x as f32)
}

/// Parses and checks a request body for `chat` (chat completions) or text completions.
pub fn parse(body: &[u8], chat: bool, limits: &Limits) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::invalid(
            None,
            "the request body must be a JSON object",
        ));
    }
    let input = if chat {
        Input::Chat(messages(&v)?)
    } else {
        Input::Text(prompt(&v)?)
    };
    let n: u64 = field(&v, "n")?.unwrap_or(1);
    if n != 1 {
        return Err(ApiError::invalid(
            Some("n"),
            format!("`n` is {n}; this server makes one choice per request (n = 1)"),
        ));
    }
    let max_tokens = match field::<u64>(&v, "max_completion_tokens")? {
        Some(m) => Some(("max_completion_tokens", m)),
        None => field::<u64>(&v, "max_tokens")?.map(|m| ("max_tokens", m)),
    };
    let max_tokens = match max_tokens {
        Some((name, 0)) => {
            return Err(ApiError::invalid(
                Some(name),
                format!("`{name}` is 0; ask for at least 1 token"),
            ))
        }
        Some((name, m)) if m > limits.max_tokens as u64 => {
            return Err(ApiError::invalid(
                Some(name),
                format!(
                    "`{name}` is {m}, more than this server allows per request ({}, --max-tokens)",
                    limits.max_tokens
                ),
            ))
        }
        Some((_, m)) => Some(m as usize),
        None => None,
    };
    let top_k: i64 = field(&v, "top_k")?.unwrap_or(40);
    if top_k < 0 {
        return Err(ApiError::invalid(
            Some("top_k"),
            format!("`top_k` is {top_k}; it must be 0 (off) or more"),
        ));
    }
    let params = SamplingParams {
        temperature: ranged(&v, "temperature", 0.0, 2.0, 0.8)?,
        top_k: top_k.min(u32::MAX as i64) as usize,
        top_p: ranged(&v, "top_p", 0.0, 1.0, 0.95)?,
        min_p: ranged(&v, "min_p", 0.0, 1.0, 0.05)?,
        repeat_penalty: ranged(&v, "repeat_penalty", 0.01, 10.0, 1.0)?,
        repeat_last_n: 64,
    };
    let stop = match v.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid(
                    Some("stop"),
                    "`stop` must be a string or an array of strings",
                )
            })?,
        Some(_) => {
            return Err(ApiError::invalid(
                Some("stop"),
                "`stop` must be a string or an array of strings",
            ))
        }
    };
    if stop.len() > MAX_STOPS || stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("`stop` takes at most {MAX_STOPS} strings of at most {MAX_STOP_BYTES} bytes"),
        ));
    }
    let json = response_format(&v)?;
    let include_usage = match v.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(o) => field::<bool>(o, "include_usage")?.unwrap_or(false),
    };
    Ok(Request {
        input,
        params,
        max_tokens,
        seed: field(&v, "seed")?,
        stop,
        json,
        stream: field(&v, "stream")?.unwrap_or(false),
        include_usage,
        cache_prompt: field(&v, "cache_prompt")?.unwrap_or(true),
    })
}

/// `response_format`: `{"type": "text"}` (the default) or `{"type": "json_object"}` (sampling
/// constrained to a JSON object, as `run --format json`); anything else is refused.
fn response_format(v: &Value) -> Result<bool, ApiError> {
    let bad = |m: String| ApiError::invalid(Some("response_format"), m);
    let f = match v.get("response_format") {
        None | Some(Value::Null) => return Ok(false),
        Some(f) => f,
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some(t) => Err(bad(format!(
            "`response_format.type` is {t:?}; this server supports \"text\" and \"json_object\""
        ))),
        None => Err(bad(
            "`response_format` must be an object with a string `type` (\"text\" or \"json_object\")".into(),
        )),
    }
}

/// `messages`: a non-empty array of `{role, content}`, content a string or text parts.
fn messages(v: &Value) -> Result<Vec<Message>, ApiError> {
    let bad = |m: String| ApiError::invalid(Some("messages"), m);
    let list = match v.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(bad("`messages` is empty; give at least one".into())),
        Some(_) => {
            return Err(bad(
                "`messages` must be an array of {role, content} objects".into(),
            ))
        }
        None => return Err(bad("`messages` is missing".into())),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("messages[{i}].role must be a string")))?;
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        _ => {
                            return Err(bad(format!(
                                "messages[{i}].content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported"
                            )))
                        }
                    }
                }
                text
            }
            Some(_) => {
                return Err(bad(format!(
                    "messages[{i}].content must be a string or an array of text parts"
                )))
            }
        };
        out.push(Message::new(role, content));
    }
    Ok(out)
}

/// `prompt`: a string, or an array holding one string.
fn prompt(v: &Value) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::invalid(Some("prompt"), m);
    match v.get("prompt") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(bad("`prompt` is empty")),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            prompt(&serde_json::json!({"prompt": a[0]}))
        }
        Some(Value::Array(_)) => Err(bad(
            "`prompt` as an array must hold exactly one string (one prompt per request)",
        )),
        Some(_) => Err(bad("`prompt` must be a string")),
        None => Err(bad("`prompt` is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_tokens: 100,
            max_prompt_tokens: 1000,
            max_body_bytes: 1 << 20,
        }
    }

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), true, &limits())
    }

    #[test]
    fn a_full_chat_request_is_read() {
        let r = chat(
            r#"{"model":"x","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
               "temperature":0,"top_p":0.5,"top_k":3,"min_p":0.1,"seed":7,"max_tokens":9,"stop":"\n","stream":true,
               "stream_options":{"include_usage":true},"user":"ignored","presence_penalty":0}"#,
        )
        .unwrap();
        assert_eq!(
            r.input,
            Input::Chat(vec![
                Message::new("system", "s"),
                Message::new("user", "ab")
            ])
        );
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(
            (r.params.top_k, r.params.top_p, r.params.min_p),
            (3, 0.5, 0.1)
        );
        assert_eq!((r.seed, r.max_tokens), (Some(7), Some(9)));
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert!(r.stream && r.include_usage);
        assert!(!r.json);
        assert!(
            r.cache_prompt,
            "the prompt cache is on unless a request turns it off"
        );
        let off = chat(r#"{"messages":[{"role":"user","content":"x"}],"cache_prompt":false}"#);
        assert!(!off.unwrap().cache_prompt);
        let j = |f: &str| {
            chat(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"response_format":{f}}}"#
            ))
            .unwrap()
            .json
        };
        assert!(j(r#"{"type":"json_object"}"#));
        assert!(!j(r#"{"type":"text"}"#));
    }

    /// A 400 naming `param` with `needle` in its message.
    fn refused(r: Result<Request, ApiError>, body: &str, param: &str, needle: &str) {
        let e = r.expect_err(body);
        assert_eq!(e.status, 400, "{body}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
        assert!(e.message.contains(needle), "{body}: {}", e.message);
    }

    #[test]
    fn bad_values_name_the_field() {
        // The sampling and length fields are checked by one validator for both endpoints: each
        // bad value is refused alike beside `messages` and beside `prompt`.
        for (fields, param, needle) in [
            (r#""temperature":"hot""#, "temperature", "invalid type"),
            (r#""temperature":1e300"#, "temperature", "between 0 and 2"),
            (r#""max_tokens":-5"#, "max_tokens", "invalid value"),
            (
                r#""max_tokens":101"#,
                "max_tokens",
                "more than this server allows",
            ),
            (r#""max_tokens":0"#, "max_tokens", "at least 1"),
            (r#""n":2"#, "n", "n = 1"),
            (r#""top_k":-1"#, "top_k", "0 (off) or more"),
            (r#""seed":-1"#, "seed", "invalid value"),
            (r#""cache_prompt":"no""#, "cache_prompt", "invalid type"),
            (r#""stop":[1]"#, "stop", "array of strings"),
            (r#""stop":["a","b","c","d","e"]"#, "stop", "at most 4"),
        ] {
            for (input, is_chat) in [
                (r#""messages":[{"role":"user","content":"x"}]"#, true),
                (r#""prompt":"x""#, false),
            ] {
                let body = format!("{{{input},{fields}}}");
                refused(
                    parse(body.as_bytes(), is_chat, &limits()),
                    &body,
                    param,
                    needle,
                );
            }
        }
        for (body, needle) in [
            (r#"{"messages":[]}"#, "empty"),
            (r#"{"messages":[{"content":"x"}]}"#, "role"),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "text parts",
            ),
            (r#"{"model":"x"}"#, "missing"),
        ] {
            refused(chat(body), body, "messages", needle);
        }
        for (body, needle) in [
            (
                r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}"#,
                "\"json_object\"",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"response_format":"json"}"#,
                "string `type`",
            ),
        ] {
            refused(chat(body), body, "response_format", needle);
        }
        let e = chat("{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(chat("[1]").unwrap_err().message.contains("JSON object"));
    }

    #[test]
    fn completion_prompts() {
        let p = |b: &str| parse(b.as_bytes(), false, &limits());
        assert_eq!(
            p(r#"{"prompt":"hi"}"#).unwrap().input,
            Input::Text("hi".into())
        );
        assert_eq!(
            p(r#"{"prompt":["hi"]}"#).unwrap().input,
            Input::Text("hi".into())
        );
        assert!(p(r#"{"prompt":["a","b"]}"#).is_err());
        assert!(p(r#"{"prompt":""}"#).is_err());
        assert!(p(r#"{"prompt":[1,2]}"#).is_err());
        let d = p(r#"{"prompt":"hi"}"#).unwrap();
        assert_eq!(
            (d.max_tokens, d.stream, d.params.temperature),
            (None, false, 0.8)
        );
    }
}
