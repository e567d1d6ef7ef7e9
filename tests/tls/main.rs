//! `--tls`: verilimit answers over HTTPS as `verify.twilio.com` (and its regional and edge forms)
//! with a certificate from its own CA, beside plain HTTP. The client resolves the Twilio names to
//! the test server itself (reqwest's `resolve`), trusts only the CA it is told to, and keeps the
//! URL `https://verify.twilio.com/...` exactly as an SDK builds it.

#[path = "../api/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{ACCOUNT_A, TOKEN_A, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verilimit::tls::Authority;

const HTTPS_PREFIX: &str = "verilimit listening on https://";

/// The names an SDK uses: the default host and a regional + edge one.
const HOSTS: &[&str] = &[
    "verify.twilio.com",
    "events.twilio.com",
    "verify.dublin.ie1.twilio.com",
    "verify.us1.twilio.com",
];

fn tls_options() -> harness::ServerOptions {
    harness::ServerOptions::new()
        .raw_arg("--tls")
        .arg("--tls-listen", "127.0.0.1:0")
}

/// The HTTPS listener's address, from the second start-up line.
async fn https_addr(server: &TestServer) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = server.stdout_lines();
        if let Some(line) = lines.iter().find(|l| l.starts_with(HTTPS_PREFIX)) {
            return line[HTTPS_PREFIX.len()..]
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
        assert!(
            Instant::now() < deadline,
            "no `{HTTPS_PREFIX}ADDR` line on stdout: {lines:?}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that trusts only `ca_pem` (no built-in roots) and reaches `addr` for every Twilio
/// name in [`HOSTS`].
fn https_client(ca_pem: Option<&str>, addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(Duration::from_secs(30));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    for host in HOSTS {
        b = b.resolve(host, addr);
    }
    b.build().unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client
        .get(url)
        .basic_auth(ACCOUNT_A, Some(TOKEN_A))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.unwrap()
}

async fn create_service(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let r = client
        .post(format!("{base}/v2/Services"))
        .basic_auth(ACCOUNT_A, Some(TOKEN_A))
        .form(&[("FriendlyName", name)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn ca_of(server: &TestServer) -> String {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/emulator/v1/ca.pem", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "GET /emulator/v1/ca.pem without credentials"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-pem-file")
    );
    let pem = r.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    pem
}

#[tokio::test]
async fn https_as_verify_twilio_com_beside_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("ca.pem");
    let server = TestServer::start(tls_options().arg("--tls-ca-out", ca_out.display())).await;
    let addr = https_addr(&server).await;
    assert!(addr.ip().is_loopback() && addr.port() != server.port());

    // The CA: served without credentials, written to --tls-ca-out (0644), never the key.
    let ca = ca_of(&server).await;
    assert_eq!(std::fs::read_to_string(&ca_out).unwrap(), ca);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca_out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    assert!(!ca.contains("PRIVATE KEY"));
    assert!(
        !server.stderr().contains("PRIVATE KEY"),
        "the key was logged"
    );

    // Over TLS, as the SDKs call it: URLs, links and paging name https://verify.twilio.com.
    let https = https_client(Some(&ca), addr);
    let base = "https://verify.twilio.com";
    let first = create_service(&https, base, "one").await;
    let sid = first["sid"].as_str().unwrap();
    assert_eq!(first["url"], format!("{base}/v2/Services/{sid}"));
    assert!(
        first["links"]["verifications"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/v2/Services/{sid}/"))
    );
    create_service(&https, base, "two").await;
    let page = get_json(&https, &format!("{base}/v2/Services?PageSize=1")).await;
    let next = page["meta"]["next_page_url"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&format!("{base}/v2/Services?")), "{next}");
    assert_eq!(
        page["meta"]["url"].as_str().unwrap(),
        format!("{base}/v2/Services?PageSize=1&Page=0")
    );
    let second = get_json(&https, &next).await;
    assert_eq!(second["services"].as_array().unwrap().len(), 1);
    assert_ne!(second["services"][0]["sid"], page["services"][0]["sid"]);

    // Regional and edge names are in the certificate, and URLs follow them.
    let regional = "https://verify.dublin.ie1.twilio.com";
    let fetched = get_json(&https, &format!("{regional}/v2/Services/{sid}")).await;
    assert_eq!(fetched["url"], format!("{regional}/v2/Services/{sid}"));
    get_json(&https, "https://verify.us1.twilio.com/v2/Services").await;
    let health = https
        .get("https://events.twilio.com/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Plain HTTP keeps working beside it, with http:// URLs.
    let plain = server.a();
    let listed = plain.get("/v2/Services").await.expect(200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 2);
    assert!(
        listed["meta"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/v2/Services", server.base_url()))
    );
}

#[tokio::test]
async fn a_wrong_ca_is_refused_and_bad_handshakes_do_not_hurt_the_server() {
    let server = TestServer::start(tls_options()).await;
    let addr = https_addr(&server).await;
    let ca = ca_of(&server).await;

    // An unrelated CA, and no CA at all: the handshake fails on the client's side.
    let other = Authority::generate().unwrap();
    for (what, client) in [
        ("an unrelated CA", https_client(Some(&other.cert_pem), addr)),
        ("no CA", https_client(None, addr)),
    ] {
        let err = client
            .get("https://verify.twilio.com/healthz")
            .send()
            .await
            .expect_err(what);
        assert!(err.is_connect(), "{what}: {err:?}");
        let chain = format!("{err:?}");
        assert!(
            chain.contains("UnknownIssuer") || chain.to_lowercase().contains("certificate"),
            "{what}: {chain}"
        );
    }

    // A name outside the certificate is refused too.
    let stranger = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("api.example.test", addr)
        .build()
        .unwrap();
    let err = stranger
        .get("https://api.example.test/healthz")
        .send()
        .await
        .expect_err("a name not in the certificate");
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");

    // A client that never says hello, and one that speaks plain HTTP to the TLS port: neither
    // blocks the listener nor takes the server down.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut plain_to_tls = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain_to_tls
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain_to_tls.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("\"ok\""),
        "plain HTTP was answered on the TLS port"
    );
    let good = https_client(Some(&ca), addr);
    let r = good
        .get("https://verify.twilio.com/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.a().get("/healthz").await.expect(200);
    drop(silent);
}

#[tokio::test]
async fn the_ca_is_kept_with_the_database_and_shared_by_instances() {
    let mut first = TestServer::start(tls_options()).await;
    let ca = ca_of(&first).await;

    // A second instance on the same database presents the same CA.
    let second = TestServer::start(tls_options().database_of(&first)).await;
    assert_eq!(ca_of(&second).await, ca);
    let addr = https_addr(&second).await;
    get_json(
        &https_client(Some(&ca), addr),
        "https://verify.twilio.com/v2/Services",
    )
    .await;
    drop(second);

    // And so does a restart.
    first.terminate().await;
    let again = TestServer::start(tls_options().database_of(&first)).await;
    assert_eq!(ca_of(&again).await, ca);

    // Without --tls, there is no CA to serve.
    let plain = TestServer::start(harness::ServerOptions::new()).await;
    plain
        .anon()
        .get("/emulator/v1/ca.pem")
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn a_given_ca_is_used_and_an_in_memory_database_makes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::generate().unwrap();
    let cert = dir.path().join("ca.crt");
    let key = dir.path().join("ca.key");
    std::fs::write(&cert, &authority.cert_pem).unwrap();
    std::fs::write(&key, authority.key_pem()).unwrap();

    let given = TestServer::start(
        tls_options()
            .database_url("sqlite::memory:")
            .arg("--tls-ca-cert", cert.display())
            .arg("--tls-ca-key", key.display()),
    )
    .await;
    assert_eq!(ca_of(&given).await, authority.cert_pem);
    let addr = https_addr(&given).await;
    get_json(
        &https_client(Some(&authority.cert_pem), addr),
        "https://verify.twilio.com/v2/Services",
    )
    .await;

    let one = TestServer::start(tls_options().database_url("sqlite::memory:")).await;
    let two = TestServer::start(tls_options().database_url("sqlite::memory:")).await;
    assert_ne!(ca_of(&one).await, ca_of(&two).await);
}

/// Runs the binary with `args` and expects it to refuse to start, saying `why`.
fn refuses(args: &[&str], why: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "sqlite::memory:",
            "--tls",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("VERILIMIT_TLS_CA_CERT")
        .env_remove("VERILIMIT_TLS_CA_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "it must not have started listening");
}

#[test]
fn inconsistent_ca_settings_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let a = Authority::generate().unwrap();
    let b = Authority::generate().unwrap();
    let cert = dir.path().join("a.crt");
    let other_key = dir.path().join("b.key");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&other_key, b.key_pem()).unwrap();
    let cert = cert.display().to_string();
    let other_key = other_key.display().to_string();
    refuses(
        &["--tls-ca-cert", &cert],
        "--tls-ca-cert and --tls-ca-key must be given together",
    );
    refuses(
        &["--tls-ca-cert", &cert, "--tls-ca-key", &other_key],
        "does not belong to the CA certificate",
    );
    refuses(&["--tls-ca-cert", &cert, "--tls-ca-key", &cert], "PKCS#8");
}
