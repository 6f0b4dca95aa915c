//! Errors as the OpenAI API shapes them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`, so clients (the `openai` library, LiteLLM)
//! show the message instead of failing to parse the reply.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One error reply.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (503 replies).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = param.map(str::to_string);
        e
    }

    /// 400 for a prompt that does not fit the context (OpenAI's code for it).
    pub fn too_long(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::invalid(Some("messages"), message);
        e.code = Some("context_length_exceeded");
        e
    }

    pub fn unauthorized() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong API key: send the header `Authorization: Bearer KEY` with the key the server was started with (--api-key)",
        );
        e.code = Some("invalid_api_key");
        e
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            what.to_string(),
        )
    }

    /// 503 with Retry-After: the server cannot take the request now but will later.
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// 500: the engine failed; the message says how.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// A body axum could not read (too large, not readable): its status, our shape.
    pub fn from_rejection(r: axum::extract::rejection::BytesRejection) -> ApiError {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this server accepts (--max-body-bytes)".to_string()
        } else {
            format!("could not read the request body: {}", r.body_text())
        };
        ApiError::new(status, "invalid_request_error", message)
    }

    /// The JSON object sent to the client (also inside an event stream).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
