//! Form bodies as the Twilio SDKs send them: `application/x-www-form-urlencoded`, PascalCase and
//! dotted names (`Push.IncludeDate`), `+` as a space, booleans as `true`/`false`, integers as
//! decimal strings. `Params` is a parsed body; its typed getters turn bad values into 60200 and
//! missing required ones into 20001, so handlers only see valid data.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;

use super::ApiError;

/// The name/value pairs of a form body or query string, in order. A repeated name keeps its
/// last value.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(input: &[u8]) -> Self {
        let pairs = form_urlencoded_pairs(input);
        Self { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated name, in order (list parameters such as Event Streams'
    /// `Types`, which the SDKs send once per element).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing(name)),
        }
    }

    /// An optional string of at most `max_chars` characters, free of control characters.
    pub fn text(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                check_text(name, v, max_chars)?;
                Ok(Some(v.to_owned()))
            }
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name)),
        }
    }

    /// An optional integer within `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_int(v)
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name)),
        }
    }
}

/// Parses `application/x-www-form-urlencoded` (also used for query strings). Invalid UTF-8 is
/// replaced rather than refused, so later validation names the parameter.
pub fn form_urlencoded_pairs(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|b| *b == b'&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = decode(it.next().unwrap_or_default());
            let v = decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn decode(raw: &[u8]) -> String {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Why a text parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    TooLong { max_chars: usize },
    ControlCharacters,
}

impl std::fmt::Display for TextProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextProblem::TooLong { max_chars } => {
                write!(f, "must be at most {max_chars} characters")
            }
            TextProblem::ControlCharacters => {
                f.write_str("must not contain control characters or invalid UTF-8")
            }
        }
    }
}

/// Text of at most `max_chars` characters, free of control characters (and of U+FFFD, which
/// stands for invalid UTF-8 in a decoded form): `None`, else what is wrong.
pub fn text_problem(v: &str, max_chars: usize) -> Option<TextProblem> {
    if v.chars().count() > max_chars {
        Some(TextProblem::TooLong { max_chars })
    } else if v.chars().any(|c| c.is_control() || c == '\u{FFFD}') {
        Some(TextProblem::ControlCharacters)
    } else {
        None
    }
}

pub fn check_text(name: &str, v: &str, max_chars: usize) -> Result<(), ApiError> {
    match text_problem(v, max_chars) {
        Some(problem) => Err(ApiError::invalid_because(name, problem)),
        None => Ok(()),
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A plain decimal integer: optional sign and digits, nothing else (no floats, exponents or
/// spaces), and no overflow.
pub fn parse_int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Largest request body accepted (bytes); larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Oversized bodies up to this size are read and dropped before the 413 is sent.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a request's whole body (up to `BODY_LIMIT`) before any extractor or handler runs.
///
/// A request refused before its body was read (bad credentials, an unknown path, a wrong method)
/// would otherwise be answered while the body is still arriving; hyper then closes the
/// connection after the answer, without saying so in the response, and a keep-alive client
/// (the official SDKs' HTTP pools) that sends its next request on it sees the connection
/// dropped without an answer. Read first, the body leaves the connection reusable, as an HTTP
/// server that reads whole requests (Twilio's) leaves it.
///
/// A body declared larger than `BODY_LIMIT`, one that grows past it, and one whose reading
/// fails reach the extractors as they are (what was read, then the rest or the error), so they
/// answer exactly as before: 413 / 20413, 400 / 20001. A slow body is still cut by the request
/// timeout (the middleware that calls this runs inside it).
pub async fn read_whole_body(request: Request) -> Request {
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    if request.body().is_end_stream() || declared_oversize(&request).is_some() {
        return request;
    }
    let (parts, mut body) = request.into_parts();
    let mut read = Read::default();
    let whole = loop {
        match body.frame().await {
            None => break Body::from(read.take()),
            Some(Ok(frame)) => {
                // Trailers: a form or JSON body has none that matter.
                if let Ok(data) = frame.into_data() {
                    read.push(data);
                    if read.len() > BODY_LIMIT {
                        break Body::new(Prefixed {
                            read: Some(read.take()),
                            failed: None,
                            rest: Some(body),
                        });
                    }
                }
            }
            Some(Err(e)) => {
                break Body::new(Prefixed {
                    read: Some(read.take()),
                    failed: Some(e),
                    rest: None,
                });
            }
        }
    };
    Request::from_parts(parts, whole)
}

/// The length a request's `Content-Length` declares, when it is over `BODY_LIMIT`.
fn declared_oversize(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > BODY_LIMIT as u64)
}

/// The frames of a body read so far: the first as it came (a body in one frame, the usual case,
/// is passed on without a copy), later ones copied after it.
#[derive(Default)]
struct Read {
    first: Option<Bytes>,
    more: bytes::BytesMut,
}

impl Read {
    fn push(&mut self, data: Bytes) {
        match self.first.take() {
            None if self.more.is_empty() => self.first = Some(data),
            first => {
                if let Some(first) = first {
                    self.more.reserve(first.len() + data.len());
                    self.more.extend_from_slice(&first);
                }
                self.more.extend_from_slice(&data);
            }
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.more.len(), Bytes::len)
    }

    fn take(&mut self) -> Bytes {
        self.first
            .take()
            .unwrap_or_else(|| self.more.split().freeze())
    }
}

/// What `read_whole_body` read, then the rest of the body or the error that stopped it.
struct Prefixed {
    read: Option<Bytes>,
    failed: Option<axum::Error>,
    rest: Option<Body>,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        use std::task::Poll;
        if let Some(read) = self.read.take().filter(|r| !r.is_empty()) {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(read))));
        }
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => std::pin::Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

/// A form body. Refuses other content types (415 / 20415) and bodies over `BODY_LIMIT` (413).
pub struct FormBody(pub Params);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.is_empty() && mime != "application/x-www-form-urlencoded" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    20415,
                    "Unsupported Media Type: send application/x-www-form-urlencoded",
                ));
            }
        }
        if let Some(n) = declared_oversize(&req) {
            // Read (and drop) a moderately oversized body so the client sees the answer rather
            // than a reset; refuse an absurd one at once.
            if n <= DRAIN_LIMIT as u64 {
                let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
            }
            return Err(too_large());
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(20001, "The request body could not be read")
            }
        })?;
        Ok(FormBody(Params::parse(&body)))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        20413,
        format!("Request body too large: the limit is {BODY_LIMIT} bytes"),
    )
}

/// The query string as `Params`.
pub fn query(uri: &axum::http::Uri) -> Params {
    Params::parse(uri.query().unwrap_or_default().as_bytes())
}

/// A JSON object body (the Passkeys operations'): `application/json` or no content type; a body
/// that is not a JSON object is 400 / 60200, never a 500.
pub struct JsonBody(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.is_empty() && mime != "application/json" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    20415,
                    "Unsupported Media Type: send application/json",
                ));
            }
        }
        let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| too_large())?;
        let _ = state;
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(m)) => Ok(Self(m)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                60200,
                "Invalid parameter: the body must be a JSON object",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_plus_as_space_and_dotted_names() {
        let p = Params::parse(b"FriendlyName=My+Service%21&Push.IncludeDate=true&Totp.TimeStep=30");
        assert_eq!(p.get("FriendlyName"), Some("My Service!"));
        assert_eq!(p.bool("Push.IncludeDate").unwrap(), Some(true));
        assert_eq!(p.int("Totp.TimeStep", 20, 60).unwrap(), Some(30));
    }

    #[test]
    fn integers_are_plain_decimals() {
        for bad in [
            "1.0",
            "1e3",
            " 1",
            "0x10",
            "",
            "99999999999999999999",
            "--1",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_int("-5"), Some(-5));
        assert_eq!(parse_int("007"), Some(7));
    }

    #[test]
    fn missing_and_invalid_map_to_twilio_codes() {
        let p = Params::parse(b"Max=abc");
        assert_eq!(p.int("Max", 1, 10).unwrap_err().code, 60200);
        assert_eq!(p.required("Interval").unwrap_err().code, 20001);
    }

    proptest! {
        /// A body read frame by frame is the frames in order, whatever their sizes (empty
        /// ones too), and its length is counted as it grows.
        #[test]
        fn a_body_read_in_frames_is_its_frames_in_order(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)
        ) {
            let mut read = Read::default();
            let mut want = Vec::new();
            for f in &frames {
                read.push(Bytes::copy_from_slice(f));
                want.extend_from_slice(f);
                prop_assert_eq!(read.len(), want.len());
            }
            let whole = read.take();
            prop_assert_eq!(whole.as_ref(), want.as_slice());
            prop_assert_eq!(read.len(), 0);
        }

        #[test]
        fn any_bytes_parse_without_panicking(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let p = Params::parse(&input);
            for (k, _) in &p.pairs {
                let _ = p.int(k, i64::MIN, i64::MAX);
                let _ = p.bool(k);
                let _ = p.text(k, 10);
            }
        }

        #[test]
        fn encoded_pairs_round_trip(k in "[A-Za-z.]{1,12}", v in "\\PC{0,30}") {
            let body = serde_urlencoded::to_string([(&k, &v)]).unwrap();
            let p = Params::parse(body.as_bytes());
            prop_assert_eq!(p.get(&k), Some(v.as_str()));
        }

        #[test]
        fn parse_int_agrees_with_i64_in_range(n in any::<i64>()) {
            let s = n.to_string();
            if s.trim_start_matches('-').len() <= 18 {
                prop_assert_eq!(parse_int(&s), Some(n));
            }
        }
    }
}
