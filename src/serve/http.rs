//! The HTTP side (axum): routes, the API key check, turning a request into a job on the queue,
//! and turning the job's events into a JSON reply or a server-sent event stream.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::Stream;

use super::api::{self, Input, Limits};
use super::error::ApiError;
use super::metrics::{Metrics, RequestOutcome};
use super::slots::{Done, Job, JobEvent, Queue, QueueError};
use crate::model::chat::ChatTemplate;
use crate::model::tokenizer::Tokenizer;
use crate::session::SharedModel;

/// What exists once the model is loaded.
pub struct Ready {
    /// The loaded model and its tokenizer (shared with the slots).
    pub shared: Arc<SharedModel>,
    /// `None` when the model has no chat template (chat requests then get a 400).
    pub template: Option<ChatTemplate>,
    /// Context of each slot.
    pub n_ctx: usize,
}

impl Ready {
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }
}

/// Shared by every request.
pub struct AppState {
    pub model_id: String,
    pub created: u64,
    /// `--api-key`: when set, every route but `/health` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    pub limits: Limits,
    pub ready: OnceLock<Ready>,
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        model_id: String,
        api_key: Option<String>,
        limits: Limits,
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState {
            model_id,
            created: now_secs(),
            api_key,
            limits,
            ready: OnceLock::new(),
            queue,
            metrics,
            next_id: AtomicU64::new(1),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The routes. `cors`: origins allowed to call from a browser (none: no CORS headers at all).
pub fn router(state: Arc<AppState>, cors: &[String]) -> anyhow::Result<Router> {
    let body_limit = state.limits.max_body_bytes;
    let mut app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .route("/health", get(health))
        .fallback(|| async { ApiError::not_found("no such endpoint (see docs/serve.md)") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    if !cors.is_empty() {
        use tower_http::cors::{AllowOrigin, Any, CorsLayer};
        let origins = if cors.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list = cors
                .iter()
                .map(|o| {
                    HeaderValue::from_str(o)
                        .map_err(|_| anyhow::anyhow!("--cors {o:?} is not a valid origin"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            AllowOrigin::list(list)
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(Any)
                .allow_headers(Any),
        );
    }
    Ok(app)
}

/// Checks the Bearer key (compared in constant time: the key is a secret).
async fn auth(State(s): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let same = given.len() == key.len()
            && given
                .bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            s.metrics.request(RequestOutcome::Invalid);
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.get().is_some() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from(1))],
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.model_id,
            "object": "model",
            "created": s.created,
            "owned_by": "pigpu",
        }],
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        s.metrics.render(s.queue.depth()),
    )
        .into_response()
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(s, true, body).await
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    complete(s, false, body).await
}

/// Counts an error reply by its status and returns it.
fn failed(s: &AppState, e: ApiError) -> Response {
    s.metrics.request(match e.status.as_u16() {
        503 => RequestOutcome::Rejected,
        400..=499 => RequestOutcome::Invalid,
        _ => RequestOutcome::Failed,
    });
    e.into_response()
}

async fn complete(s: Arc<AppState>, chat: bool, body: Result<Bytes, BytesRejection>) -> Response {
    match start(&s, chat, body) {
        Ok((job_rx, stream, include_usage)) => {
            let reply = Reply {
                id: format!(
                    "{}-{}",
                    if chat { "chatcmpl" } else { "cmpl" },
                    s.next_id.fetch_add(1, Ordering::Relaxed)
                ),
                created: now_secs(),
                model: s.model_id.clone(),
                chat,
            };
            if stream {
                Sse::new(EventStream {
                    rx: job_rx,
                    reply,
                    first: true,
                    include_usage,
                    pending: Default::default(),
                    finished: false,
                })
                .into_response()
            } else {
                collect(&s, job_rx, reply).await
            }
        }
        Err(e) => failed(&s, e),
    }
}

/// Parses, tokenizes, checks the length and queues the job.
fn start(
    s: &AppState,
    chat: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<(UnboundedReceiver<JobEvent>, bool, bool), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let ready = s
        .ready
        .get()
        .ok_or_else(|| ApiError::unavailable("the model is still loading; try again shortly", 2))?;
    let req = api::parse(&body, chat, &s.limits)?;
    let ids = match &req.input {
        Input::Chat(messages) => {
            let t = ready.template.as_ref().ok_or_else(|| {
                ApiError::invalid(
                    Some("messages"),
                    "this model has no chat template (tokenizer.chat_template); use /v1/completions",
                )
            })?;
            let text = t
                .render(messages, true)
                .map_err(|e| ApiError::invalid(Some("messages"), format!("{e}")))?;
            ready.tokenizer().encode(&text, false, true)
        }
        Input::Text(p) => ready.tokenizer().encode(p, true, true),
    }
    .map_err(|e| ApiError::invalid(None, format!("tokenizing the prompt: {e}")))?;
    if ids.is_empty() {
        return Err(ApiError::invalid(None, "the prompt tokenizes to nothing"));
    }
    let n_ctx = ready.n_ctx;
    if ids.len() >= n_ctx {
        return Err(ApiError::too_long(format!(
            "the prompt is {} tokens; this server's context is {n_ctx} tokens per slot (--ctx), and at least one must be left to generate",
            ids.len()
        )));
    }
    if ids.len() > s.limits.max_prompt_tokens {
        return Err(ApiError::too_long(format!(
            "the prompt is {} tokens, more than this server accepts ({}, --max-prompt-tokens)",
            ids.len(),
            s.limits.max_prompt_tokens
        )));
    }
    let max_tokens = req
        .max_tokens
        .unwrap_or(s.limits.max_tokens)
        .min(n_ctx - ids.len());
    let seed = req.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ s.next_id.load(Ordering::Relaxed).rotate_left(32)
    });
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt: ids,
        max_tokens,
        params: req.params,
        seed,
        stop: req.stop,
        json: req.json,
        cache_prompt: req.cache_prompt,
        events: tx,
        queued_at: Instant::now(),
    };
    match s.queue.push(job) {
        Ok(()) => Ok((rx, req.stream, req.include_usage)),
        Err(QueueError::Full) => Err(ApiError::unavailable(
            format!(
                "all {} slots are busy and {} requests are already waiting (--queue); retry later",
                s.metrics.slots.load(Ordering::Relaxed),
                s.queue.depth()
            ),
            1,
        )),
        Err(QueueError::Closed) => Err(ApiError::unavailable("the server is shutting down", 5)),
    }
}

/// How a reply is labelled (ids, model, chat or text completion).
struct Reply {
    id: String,
    created: u64,
    model: String,
    chat: bool,
}

fn usage(d: &Done) -> Value {
    json!({
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "total_tokens": d.prompt_tokens + d.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": d.cached_tokens},
    })
}

/// pigpu's own timings, beside `usage` (clients ignore unknown fields).
fn timings(d: &Done) -> Value {
    let ms = |t: std::time::Duration| t.as_secs_f64() * 1e3;
    json!({
        "queued_ms": ms(d.queued),
        "prompt_ms": ms(d.prompt_time),
        "generation_ms": ms(d.gen_time),
    })
}

/// Waits for the whole completion (not streamed).
async fn collect(s: &AppState, mut rx: UnboundedReceiver<JobEvent>, r: Reply) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            JobEvent::Text(t) => text.push_str(&t),
            // Counted by the slot.
            JobEvent::Failed(m) => return ApiError::internal(m).into_response(),
            JobEvent::Done(d) => {
                let choice = if r.chat {
                    json!({"index": 0, "message": {"role": "assistant", "content": text},
                           "logprobs": null, "finish_reason": d.finish.as_str()})
                } else {
                    json!({"index": 0, "text": text, "logprobs": null,
                           "finish_reason": d.finish.as_str()})
                };
                return Json(json!({
                    "id": r.id,
                    "object": if r.chat { "chat.completion" } else { "text_completion" },
                    "created": r.created,
                    "model": r.model,
                    "choices": [choice],
                    "usage": usage(&d),
                    "timings": timings(&d),
                }))
                .into_response();
            }
        }
    }
    failed(
        s,
        ApiError::internal("the slot ended the request without an answer"),
    )
}

/// The event stream of a `stream: true` request. It owns the job's receiver, so when the client
/// disconnects and axum drops the stream, the slot sees the channel closed at its next token.
struct EventStream {
    rx: UnboundedReceiver<JobEvent>,
    reply: Reply,
    first: bool,
    include_usage: bool,
    pending: std::collections::VecDeque<SseEvent>,
    finished: bool,
}

impl EventStream {
    fn chunk(&self, content: Option<&str>, finish: Option<&str>, role: bool) -> Value {
        let r = &self.reply;
        let choice = if r.chat {
            let mut delta = serde_json::Map::new();
            if role {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(c) = content {
                delta.insert("content".into(), json!(c));
            }
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": content.unwrap_or(""), "logprobs": null, "finish_reason": finish})
        };
        json!({
            "id": r.id,
            "object": if r.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": r.created,
            "model": r.model,
            "choices": [choice],
        })
    }

    fn push(&mut self, v: Value) {
        self.pending
            .push_back(SseEvent::default().data(v.to_string()));
    }

    fn on_event(&mut self, ev: JobEvent) {
        match ev {
            JobEvent::Text(t) => {
                let role = std::mem::take(&mut self.first);
                let c = self.chunk(Some(&t), None, role);
                self.push(c);
            }
            JobEvent::Done(d) => {
                let role = std::mem::take(&mut self.first);
                let mut c = self.chunk(None, Some(d.finish.as_str()), role);
                c["usage"] = usage(&d);
                c["timings"] = timings(&d);
                self.push(c);
                if self.include_usage {
                    let mut u = self.chunk(None, None, false);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&d);
                    self.push(u);
                }
                self.pending.push_back(SseEvent::default().data("[DONE]"));
                self.finished = true;
            }
            JobEvent::Failed(m) => {
                self.push(ApiError::internal(m).body());
                self.finished = true;
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<SseEvent, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(ev)) => self.on_event(ev),
                Poll::Ready(None) => {
                    let e = ApiError::internal("the slot ended the request without an answer");
                    self.push(e.body());
                    self.finished = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
