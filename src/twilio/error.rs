//! One error type that renders Twilio's error body:
//! `{"code", "message", "more_info", "status"}` (never `type`/`title`, which would make
//! twilio-python read the body as an RFC 9457 problem).
//!
//! Client errors carry their Twilio code. Internal errors are logged once, with their chain, and
//! answered with a generic 500 that leaks nothing.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.into()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// 404 / 20404 for `/Services/VA…/…` (the path after `/v2`).
    pub fn not_found(path: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
            .with_header("www-authenticate", "Basic realm=\"Twilio API\"")
    }

    /// 400 / 20001.
    pub fn missing(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            20001,
            format!("Missing required parameter {param} in the post body"),
        )
    }

    /// 400 / 60200.
    pub fn invalid(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            60200,
            format!("Invalid parameter: {param}"),
        )
    }

    /// 400 / 60200 with an explanation after the parameter name.
    pub fn invalid_because(param: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            60200,
            format!("Invalid parameter: {param}: {why}"),
        )
    }

    pub fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn too_many(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }

    /// Logs the cause once and answers a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "An internal server error has occurred",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service unavailable: the server is shutting down",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        /// Twilio's error body (its fields in the order they have always had).
        #[derive(serde::Serialize)]
        struct Body<'a> {
            code: u32,
            message: &'a str,
            more_info: String,
            status: u16,
        }
        let body = Body {
            code: self.code,
            message: &self.message,
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code),
            status: self.status.as_u16(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
