//! Starts the real `verilimit` binary on a free loopback port with a throwaway SQLite database and
//! talks to it over HTTP, as the official SDKs would.
//!
//! Self-contained on purpose (no sibling modules), so another test binary can reuse it with
//! `#[path = "../api/harness.rs"] mod harness;`. It holds the one check of Twilio's error body
//! ([`check_twilio_error`], through [`Reply::expect_error`] and [`Reply::check_error`]).
//!
//! The server announces its address with one stdout line; we wait for that line (never a sleep),
//! and keep everything it writes to stderr so a test, or a failed start-up, can show the logs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The primary account (`TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`).
pub const ACCOUNT_A: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN_A: &str = "token-of-account-a";
/// A second account (`VERILIMIT_ACCOUNTS`).
pub const ACCOUNT_B: &str = "ACfedcba9876543210fedcba9876543210";
pub const TOKEN_B: &str = "token-of-account-b";
/// An API key mapped explicitly to account A (`SKSID:SECRET:ACSID`).
pub const API_KEY_SID: &str = "SK00112233445566778899aabbccddeeff";
pub const API_KEY_SECRET: &str = "secret-of-the-api-key";
/// An API key given without an account: it belongs to the first configured account (A).
pub const DEFAULT_API_KEY_SID: &str = "SKffeeddccbbaa99887766554433221100";
pub const DEFAULT_API_KEY_SECRET: &str = "secret-of-the-default-api-key";

/// How long the server may take to print its start-up line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM may take to stop the server.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one HTTP exchange, so a hung server fails a test instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const STARTUP_PREFIX: &str = "verilimit listening on ";

/// How to start a server. `ServerOptions::new()` is the plain configuration: the two accounts,
/// the two API keys, a fresh database in a new temporary directory.
#[derive(Clone, Default)]
pub struct ServerOptions {
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_removed: Vec<String>,
    database: Option<(Arc<TempDir>, PathBuf)>,
    database_url: Option<String>,
}

impl ServerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `--name=value` to the command line.
    pub fn arg(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.args.push(format!("{name}={value}"));
        self
    }

    /// Adds one raw command-line argument.
    pub fn raw_arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets (or overrides) an environment variable of the server.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Uses this database URL (e.g. a PostgreSQL database shared by several servers).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Starts the server without this environment variable (e.g. `VERILIMIT_API_KEYS`).
    pub fn without_env(mut self, name: &str) -> Self {
        self.env_removed.push(name.to_owned());
        self
    }

    /// Uses the same database file (and keeps its temporary directory alive) as `server`:
    /// for restart tests.
    pub fn database_of(mut self, server: &TestServer) -> Self {
        self.database = Some((Arc::clone(&server.dir), server.db_path.clone()));
        self.database_url = Some(server.database_url.clone());
        self
    }
}

/// A running `verilimit` child process. Dropping it kills the process.
pub struct TestServer {
    child: Child,
    exit: Option<ExitStatus>,
    base_url: String,
    port: u16,
    dir: Arc<TempDir>,
    db_path: PathBuf,
    database_url: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout_closed: Option<oneshot::Receiver<()>>,
    stderr_thread: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

impl TestServer {
    /// Spawns the binary and waits for its start-up line (at most [`START_TIMEOUT`]); panics with
    /// the captured stderr if it does not come.
    pub async fn start(opts: ServerOptions) -> TestServer {
        let (dir, db_path) = match opts.database {
            Some(shared) => shared,
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("verilimit-test-")
                    .tempdir()
                    .expect("create a temporary directory");
                let path = dir.path().join("verilimit.db");
                (Arc::new(dir), path)
            }
        };

        let database_url = match opts.database_url {
            Some(url) => url,
            None if std::env::var("VERILIMIT_TEST_BACKEND").as_deref() == Ok("postgres") => {
                fresh_postgres_database().await
            }
            None => format!("sqlite://{}", db_path.display()),
        };

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_verilimit"));
        // Nothing from the developer's own environment may change the configuration under test.
        for (name, _) in std::env::vars_os() {
            if let Some(name) = name.to_str() {
                if name.starts_with("VERILIMIT_") || name.starts_with("TWILIO_") {
                    cmd.env_remove(name);
                }
            }
        }
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(&database_url)
            .args(&opts.args)
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_A)
            .env("TWILIO_AUTH_TOKEN", TOKEN_A)
            .env("VERILIMIT_ACCOUNTS", format!("{ACCOUNT_B}:{TOKEN_B}"))
            .env(
                "VERILIMIT_API_KEYS",
                format!(
                    "{API_KEY_SID}:{API_KEY_SECRET}:{ACCOUNT_A},\
                     {DEFAULT_API_KEY_SID}:{DEFAULT_API_KEY_SECRET}"
                ),
            )
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &opts.env {
            cmd.env(name, value);
        }
        for name in &opts.env_removed {
            cmd.env_remove(name);
        }

        let mut child = cmd.spawn().expect("spawn the verilimit binary");
        let child_stdout = child.stdout.take().expect("piped stdout");
        let child_stderr = child.stderr.take().expect("piped stderr");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut reader = child_stderr;
                let mut chunk = [0u8; 8192];
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stderr.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
            })
        };

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = oneshot::channel::<String>();
        let (closed_tx, closed_rx) = oneshot::channel::<()>();
        {
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
                let mut line_tx = Some(line_tx);
                for line in BufReader::new(child_stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with(STARTUP_PREFIX) {
                        if let Some(tx) = line_tx.take() {
                            let _ = tx.send(line.clone());
                        }
                    }
                    stdout.lock().unwrap().push(line);
                }
                // Dropping an unsent `line_tx` tells `start` that stdout closed first.
                drop(line_tx);
                let _ = closed_tx.send(());
            });
        }

        let mut server = TestServer {
            child,
            exit: None,
            base_url: String::new(),
            port: 0,
            dir,
            db_path,
            database_url,
            stdout,
            stderr,
            stdout_closed: Some(closed_rx),
            stderr_thread: Some(stderr_thread),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("build the HTTP client"),
        };

        let line = match tokio::time::timeout(START_TIMEOUT, line_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => server.fail_start("stdout closed before the start-up line"),
            Err(_) => server.fail_start(&format!(
                "no start-up line on stdout within {} s",
                START_TIMEOUT.as_secs()
            )),
        };
        let url = line[STARTUP_PREFIX.len()..].to_owned();
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok());
        match port {
            Some(port) if port != 0 => {
                server.port = port;
                server.base_url = url;
            }
            _ => server.fail_start(&format!(
                "start-up line is not `verilimit listening on http://127.0.0.1:PORT`: {line:?}"
            )),
        }
        server
    }

    fn fail_start(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.exit = status;
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        panic!(
            "verilimit did not start: {why}\nexit status: {status:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout_lines().join("\n"),
            self.stderr()
        );
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database URL this server uses (SQLite file, or a PostgreSQL database of its own).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The SQLite file this server uses (with the SQLite backend).
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has written to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The lines the server has written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        self.child.kill().expect("send SIGKILL");
        let status = self.child.wait().expect("reap the killed server");
        self.exit = Some(status);
        self.join_stderr();
        status
    }

    /// SIGTERM, then waits (at most [`STOP_TIMEOUT`]) for the process to exit. Afterwards
    /// [`stderr`](Self::stderr) holds the complete log.
    pub async fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        // The process closes its stdout when it exits: wait for that event first.
        if let Some(closed) = self.stdout_closed.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, closed).await;
        }
        // Then reap it; a process that closed stdout early gets the rest of the deadline.
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                self.join_stderr();
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "verilimit did not exit within {} s of SIGTERM\nstderr:\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn join_stderr(&mut self) {
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }

    fn client(&self, auth: Option<(&str, &str)>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base_url.clone(),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// Account A with its auth token.
    pub fn a(&self) -> Client {
        self.client(Some((ACCOUNT_A, TOKEN_A)))
    }

    /// Account B with its auth token.
    pub fn b(&self) -> Client {
        self.client(Some((ACCOUNT_B, TOKEN_B)))
    }

    /// The API key of account A (`SK…:secret`, no account SID anywhere, as the SDKs send it).
    pub fn api_key(&self) -> Client {
        self.client(Some((API_KEY_SID, API_KEY_SECRET)))
    }

    /// The API key configured without an account.
    pub fn default_api_key(&self) -> Client {
        self.client(Some((DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET)))
    }

    /// No Authorization header at all (what twilio-python sends without credentials).
    pub fn anon(&self) -> Client {
        self.client(None)
    }

    /// Basic auth with any username and password.
    pub fn basic(&self, user: &str, password: &str) -> Client {
        self.client(Some((user, password)))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client for one set of credentials. Paths are relative to the server
/// (`/v2/Services`) unless they are absolute URLs (`meta.next_page_url`), which are used verbatim.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// A request with this client's credentials, for anything the helpers below do not cover
    /// (extra headers such as `Host`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match &self.auth {
            Some((user, password)) => rb.basic_auth(user, Some(password)),
            None => rb,
        }
    }

    /// Sends a request built with [`request`](Self::request) and reads the whole answer.
    pub async fn send(&self, rb: RequestBuilder) -> Reply {
        let request = rb.build().expect("build the request");
        let method = request.method().to_string();
        let url = request.url().to_string();
        let response = self
            .http
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
        Reply {
            method,
            url,
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// POST with a form body, encoded as twilio-python does (spaces as `+`).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(self.request(Method::POST, path).form(form)).await
    }

    /// POST with an already encoded form body.
    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.send(
            self.request(Method::POST, path)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.to_owned()),
        )
        .await
    }
}

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics (showing the request and body) if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}): {:?}",
                self.method, self.url, self.status, self.body
            )
        })
    }

    /// Asserts the status and returns the JSON body (`Value::Null` for an empty body).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{} {} answered {} instead of {status}: {}",
            self.method, self.url, self.status, self.body
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a Twilio error answer: this HTTP status, and [`check_error`](Self::check_error)
    /// with the given code. Returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: u64) -> Value {
        assert_eq!(
            self.status,
            status,
            "{} answered {} instead of {status}: {}",
            self.request(),
            self.status,
            self.context()
        );
        let (got, body) = self.check_error().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, code, "wrong error code: {}", self.context());
        body
    }

    /// Checks a Twilio error answer of any code with [`check_twilio_error`]; returns the code and
    /// the body, or what is wrong (with the request and the answer).
    pub fn check_error(&self) -> Result<(u64, Value), String> {
        check_twilio_error(self.status, self.header("content-type"), &self.body)
            .map_err(|e| format!("{e}: {}", self.context()))
    }

    /// `METHOD URL` (a long URL shortened).
    pub fn request(&self) -> String {
        format!("{} {}", self.method, shorten(&self.url, 200))
    }

    /// The request and the answer (status and body, a long body cut), for messages.
    pub fn context(&self) -> String {
        format!(
            "{} -> {}: {:?}",
            self.request(),
            self.status,
            shorten(&self.body, 600)
        )
    }

    /// The error `message`, after [`expect_error`](Self::expect_error).
    #[track_caller]
    pub fn error_message(&self, status: u16, code: u64) -> String {
        self.expect_error(status, code)["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The one check of a Twilio error answer, for any code: a JSON content type (when the headers
/// were read) and a body of exactly `code`, `message` (non-empty), `more_info`
/// (`https://www.twilio.com/docs/errors/{code}`) and `status` (repeating the HTTP status), with
/// `details` optional and nothing else (never RFC 9457's `type`/`title`). Returns the code and
/// the body.
pub fn check_twilio_error(
    status: u16,
    content_type: Option<&str>,
    body: &str,
) -> Result<(u64, Value), String> {
    if let Some(ct) = content_type.filter(|ct| !ct.starts_with("application/json")) {
        return Err(format!("error content-type {ct:?}"));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("error body is not JSON ({e})"))?;
    let object = value.as_object().ok_or("error body is not an object")?;
    if let Some(key) = object.keys().find(|k| {
        !matches!(
            k.as_str(),
            "code" | "message" | "more_info" | "status" | "details"
        )
    }) {
        return Err(format!("unexpected key {key:?} in a Twilio error body"));
    }
    let code = value["code"].as_u64().ok_or("`code` is not an integer")?;
    if value["status"].as_u64() != Some(u64::from(status)) {
        return Err("`status` must repeat the HTTP status".into());
    }
    if value["message"].as_str().is_none_or(str::is_empty) {
        return Err("`message` must be a non-empty string".into());
    }
    if value["more_info"].as_str()
        != Some(format!("https://www.twilio.com/docs/errors/{code}").as_str())
    {
        return Err("wrong `more_info`".into());
    }
    Ok((code, value))
}

/// At most `max` bytes of `s` (cut at a character boundary), saying how long it was.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…({} bytes)", &s[..cut], s.len())
}

/// With `VERILIMIT_TEST_BACKEND=postgres`, every server gets a new database on the PostgreSQL
/// server at `VERILIMIT_TEST_PG` (default: this machine's, trust auth, database `test`). The
/// databases are named `verilimit_t_…`; the test script drops them when the run ends.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = std::env::var("VERILIMIT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!(
        "verilimit_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    let (base, _) = admin
        .split_once('?')
        .map(|(b, q)| (b.to_owned(), q))
        .unwrap_or((admin.clone(), ""));
    let cut = base.rfind('/').expect("a database URL with a path");
    format!("{}/{name}", &base[..cut])
}
