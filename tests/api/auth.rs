//! HTTP Basic with an account's auth token or an API key; accounts never see each other's
//! resources.

use reqwest::Method;
use serde_json::json;

use crate::harness::{
    ACCOUNT_A, ACCOUNT_B, API_KEY_SECRET, API_KEY_SID, Client, DEFAULT_API_KEY_SID, Reply,
    ServerOptions, TOKEN_A, TOKEN_B, TestServer,
};
use crate::helpers::*;

#[track_caller]
fn assert_unauthorized(reply: &Reply) {
    assert_eq!(reply.error_message(401, 20003), "Authenticate");
}

/// One request of every kind against A's chain, with `client`.
async fn every_endpoint(client: &Client, vs: &str, rk: &str, bl: &str) -> Vec<Reply> {
    vec![
        client.get("/v2/Services").await,
        client
            .post_form("/v2/Services", &[("FriendlyName", "x")])
            .await,
        client.get(&service_path(vs)).await,
        client
            .post_form(&service_path(vs), &[("FriendlyName", "x")])
            .await,
        client.delete(&service_path(vs)).await,
        client.get(&rate_limits_path(vs)).await,
        client
            .post_form(&rate_limits_path(vs), &[("UniqueName", "x")])
            .await,
        client.get(&rate_limit_path(vs, rk)).await,
        client
            .post_form(&rate_limit_path(vs, rk), &[("Description", "x")])
            .await,
        client.delete(&rate_limit_path(vs, rk)).await,
        client.get(&buckets_path(vs, rk)).await,
        client
            .post_form(&buckets_path(vs, rk), &[("Max", "1"), ("Interval", "7")])
            .await,
        client.get(&bucket_path(vs, rk, bl)).await,
        client
            .post_form(&bucket_path(vs, rk, bl), &[("Max", "1")])
            .await,
        client.delete(&bucket_path(vs, rk, bl)).await,
    ]
}

/// A's chain is exactly as created.
async fn assert_chain_intact(a: &Client, chain: &Chain) {
    let (vs, rk, bl) = chain.first_sids();
    let service = &chain.service_body;
    let rate_limit = &chain.rate_limits[0].body;
    let bucket = &chain.rate_limits[0].buckets[0].body;
    assert_eq!(&a.get(&service_path(&vs)).await.expect(200), service);
    assert_eq!(
        &a.get(&rate_limit_path(&vs, &rk)).await.expect(200),
        rate_limit
    );
    assert_eq!(
        &a.get(&bucket_path(&vs, &rk, &bl)).await.expect(200),
        bucket
    );
    let list = a.get("/v2/Services").await.expect(200);
    assert_eq!(list["services"], json!([service]));
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(list["rate_limits"], json!([rate_limit]));
    let list = a.get(&buckets_path(&vs, &rk)).await.expect(200);
    assert_eq!(list["buckets"], json!([bucket]));
}

#[tokio::test]
async fn requests_without_credentials_are_refused_with_401_and_20003() {
    let server = TestServer::start(ServerOptions::new()).await;
    let chain = one_of_each(&server.a()).await;
    let (vs, rk, bl) = chain.first_sids();
    for reply in every_endpoint(&server.anon(), &vs, &rk, &bl).await {
        assert_unauthorized(&reply);
    }
    assert_chain_intact(&server.a(), &chain).await;
}

#[tokio::test]
async fn a_wrong_auth_token_is_refused_with_401_and_20003() {
    let server = TestServer::start(ServerOptions::new()).await;
    let chain = one_of_each(&server.a()).await;
    let (vs, rk, bl) = chain.first_sids();
    for client in [
        server.basic(ACCOUNT_A, "wrong-token"),
        server.basic(ACCOUNT_A, TOKEN_B),
        server.basic(ACCOUNT_B, TOKEN_A),
        server.basic(ACCOUNT_A, ""),
        server.basic(ACCOUNT_A, &format!("{TOKEN_A}x")),
    ] {
        for reply in every_endpoint(&client, &vs, &rk, &bl).await {
            assert_unauthorized(&reply);
        }
    }
    assert_chain_intact(&server.a(), &chain).await;
}

#[tokio::test]
async fn an_unknown_account_is_refused_with_401_and_20003() {
    let server = TestServer::start(ServerOptions::new()).await;
    let stranger = server.basic("AC99999999999999999999999999999999", TOKEN_A);
    assert_unauthorized(&stranger.get("/v2/Services").await);
    let dev = server.basic("AC00000000000000000000000000000000", "verilimit-dev-token");
    assert_unauthorized(&dev.get("/v2/Services").await);
}

#[tokio::test]
async fn a_malformed_authorization_header_is_refused_with_401() {
    let server = TestServer::start(ServerOptions::new()).await;
    let anon = server.anon();
    for header in [
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        // "no-colon-at-all"
        "Basic bm8tY29sb24tYXQtYWxs",
        // valid credentials, wrong scheme
        &format!("Bearer {TOKEN_A}"),
        "Digest username=\"AC0123456789abcdef0123456789abcdef\"",
        "",
    ] {
        let reply = anon
            .send(
                anon.request(Method::GET, "/v2/Services")
                    .header("Authorization", header),
            )
            .await;
        assert_unauthorized(&reply);
    }
}

#[tokio::test]
async fn the_api_key_acts_for_its_account() {
    let server = TestServer::start(ServerOptions::new()).await;
    let key = server.api_key();
    let service = create_service(&key, "Via API key").await;
    assert_eq!(service["account_sid"], ACCOUNT_A);
    let vs = str_of(&service["sid"]);
    // Account A sees what the key created, and the key sees what A created.
    assert_eq!(
        server.a().get(&service_path(&vs)).await.expect(200),
        service
    );
    let by_a = create_service(&server.a(), "Via token").await;
    let list = key.get("/v2/Services").await.expect(200);
    assert_eq!(list["services"].as_array().map(Vec::len), Some(2));
    assert!(
        list["services"]
            .as_array()
            .is_some_and(|s| s.contains(&by_a))
    );
    // The whole surface works with the key.
    let rate_limit = create_rate_limit(&key, &vs, "ip").await;
    assert_eq!(rate_limit["account_sid"], ACCOUNT_A);
    let bucket = create_bucket(&key, &vs, &str_of(&rate_limit["sid"]), 5, 60).await;
    assert_eq!(bucket["account_sid"], ACCOUNT_A);
    // Account B does not see any of it.
    server
        .b()
        .get(&service_path(&vs))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn an_api_key_configured_without_an_account_belongs_to_the_first_account() {
    let server = TestServer::start(ServerOptions::new()).await;
    let service = create_service(&server.default_api_key(), "Default key").await;
    assert_eq!(service["account_sid"], ACCOUNT_A);
}

#[tokio::test]
async fn an_api_key_with_a_wrong_secret_is_refused_with_401_and_20003() {
    let server = TestServer::start(ServerOptions::new()).await;
    for client in [
        server.basic(API_KEY_SID, "wrong-secret"),
        server.basic(API_KEY_SID, TOKEN_A),
        server.basic(API_KEY_SID, ""),
        server.basic(DEFAULT_API_KEY_SID, API_KEY_SECRET),
        server.basic("SK99999999999999999999999999999999", API_KEY_SECRET),
    ] {
        assert_unauthorized(&client.get("/v2/Services").await);
        assert_unauthorized(
            &client
                .post_form("/v2/Services", &[("FriendlyName", "x")])
                .await,
        );
    }
    assert_eq!(
        server.a().get("/v2/Services").await.expect(200)["services"],
        json!([])
    );
}

#[tokio::test]
async fn another_account_cannot_see_or_change_a_services_rate_limits_or_buckets() {
    let server = TestServer::start(ServerOptions::new()).await;
    let chain = one_of_each(&server.a()).await;
    let (vs, rk, bl) = chain.first_sids();
    let replies = every_endpoint(&server.b(), &vs, &rk, &bl).await;
    // The first two requests are B's own list and create; everything else names A's resources.
    replies[0].expect(200);
    let b_service = replies[1].expect(201);
    assert_eq!(b_service["account_sid"], ACCOUNT_B);
    for reply in &replies[2..] {
        reply.expect_error(404, 20404);
    }
    assert_not_found(&replies[2], &format!("/Services/{vs}"));

    // Nothing of A changed, and the lists are separate.
    assert_chain_intact(&server.a(), &chain).await;
    let b_list = server.b().get("/v2/Services").await.expect(200);
    assert_eq!(b_list["services"], json!([b_service]));
}

#[tokio::test]
async fn accounts_may_use_the_same_unique_names_and_intervals_independently() {
    let server = TestServer::start(ServerOptions::new()).await;
    let (a_chain, b_chain) = (
        one_of_each(&server.a()).await,
        one_of_each(&server.b()).await,
    );
    let (a_limit, b_limit) = (&a_chain.rate_limits[0], &b_chain.rate_limits[0]);
    let (a_bucket, b_bucket) = (&a_limit.buckets[0], &b_limit.buckets[0]);
    assert_eq!(a_limit.body["unique_name"], b_limit.body["unique_name"]);
    assert_eq!(a_bucket.body["interval"], b_bucket.body["interval"]);
    assert_eq!(a_chain.service_body["account_sid"], ACCOUNT_A);
    assert_eq!(b_chain.service_body["account_sid"], ACCOUNT_B);
    assert_eq!(b_limit.body["account_sid"], ACCOUNT_B);
    assert_eq!(b_bucket.body["account_sid"], ACCOUNT_B);
}

#[tokio::test]
async fn the_control_plane_needs_credentials_too() {
    let server = TestServer::start(ServerOptions::new()).await;
    assert_unauthorized(&server.anon().get("/emulator/v1/Clock").await);
    assert_unauthorized(
        &server
            .anon()
            .post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "5")])
            .await,
    );
}

#[tokio::test]
async fn credentials_never_appear_in_the_logs() {
    let mut server = TestServer::start(ServerOptions::new().arg("--log", "debug")).await;
    one_of_each(&server.a()).await;
    server.api_key().get("/v2/Services").await.expect(200);
    server
        .basic(ACCOUNT_A, "wrong-token")
        .get("/v2/Services")
        .await;
    server.terminate().await;
    let logs = server.stderr();
    for secret in [TOKEN_A, API_KEY_SECRET, "wrong-token"] {
        assert!(
            !logs.contains(secret),
            "the logs contain the secret {secret:?}:\n{logs}"
        );
    }
    // Nor the Basic credentials in base64 (the encoded password at the end is enough to spot them).
    for (user, password) in [(ACCOUNT_A, TOKEN_A), (API_KEY_SID, API_KEY_SECRET)] {
        let encoded = base64(&format!("{user}:{password}"));
        let tail = &encoded[encoded.len() - 16..];
        assert!(
            !logs.contains(tail),
            "the logs contain the Authorization header of {user}:\n{logs}"
        );
    }
}

/// Standard base64 with padding (enough for the log check above).
fn base64(input: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one HTTP/1.1 response (head, then a `content-length` body) from `stream`; its status.
async fn read_response(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head
                    .strip_prefix("http/1.1 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not a response: {head}"));
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .expect("read");
        assert!(
            n > 0,
            "the connection was closed without a (whole) answer: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request refused before its body mattered (bad credentials, an unknown path, a wrong
/// method) is answered once its body has arrived, and the connection then serves the next
/// request: keep-alive clients (the SDKs' pools) reuse it. Answered while the body was still
/// on its way, the connection was closed after the answer and the client's next request on it
/// was dropped unanswered.
#[tokio::test]
async fn a_refused_requests_body_is_read_and_the_connection_stays_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(ServerOptions::new()).await;
    let good = format!("{ACCOUNT_A}:{TOKEN_A}");
    let bad = format!("{ACCOUNT_A}:not-the-token");
    let cases = [
        ("POST", "/v2/Services", bad.as_str(), 401),
        ("POST", "/v2/Nowhere", good.as_str(), 404),
        ("PUT", "/v2/Services", good.as_str(), 405),
    ];
    for (method, path, user, status) in cases {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let body = b"FriendlyName=Nope";
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            base64(user),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        // Nothing is answered while the announced body has not arrived.
        let mut early = [0u8; 64];
        let answered_early = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            stream.read(&mut early),
        )
        .await;
        assert!(
            answered_early.is_err(),
            "{method} {path}: answered before its body arrived: {answered_early:?} {:?}",
            String::from_utf8_lossy(&early)
        );
        stream.write_all(body).await.expect("body");
        assert_eq!(read_response(&mut stream).await, status, "{method} {path}");
        // The same connection serves the next request.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("second request");
        assert_eq!(
            read_response(&mut stream).await,
            200,
            "{method} {path}: next request"
        );
    }
}
