//! Every error the Twilio surface gives uses Twilio's error body and nothing else, so
//! twilio-python raises `TwilioRestException` with the right code (checked by the harness's
//! `Reply::expect_error`: JSON content type, exactly the keys, no RFC 9457 `type`/`title`).

use crate::harness::{Reply, ServerOptions, TestServer};
use crate::helpers::*;

#[tokio::test]
async fn every_kind_of_error_has_exactly_twilios_error_body() {
    let server = TestServer::start(
        ServerOptions::new()
            .arg("--max-rate-limits-per-service", 1)
            .arg("--max-buckets-per-rate-limit", 1),
    )
    .await;
    let a = server.a();
    let (vs, rk, _) = one_of_each(&a).await.first_sids();
    let empty_service = str_of(&create_service(&a, "Empty").await["sid"]);

    let cases: Vec<(Reply, u16, u64)> = vec![
        (a.get(&service_path(&unknown_sid("VA"))).await, 404, 20404),
        (server.anon().get("/v2/Services").await, 401, 20003),
        (a.post_form("/v2/Services", &[]).await, 400, 20001),
        (
            a.post_form(
                "/v2/Services",
                &[("FriendlyName", "x"), ("CodeLength", "3")],
            )
            .await,
            400,
            60200,
        ),
        (a.get("/v2/Services?PageSize=1001").await, 400, 20007),
        (
            a.get("/v2/Services?PageSize=1&PageToken=bogus").await,
            400,
            21481,
        ),
        (
            a.post_form(&rate_limits_path(&vs), &[("UniqueName", "second")])
                .await,
            400,
            60207,
        ),
        (
            a.post_form(
                &rate_limits_path(&empty_service),
                &[("UniqueName", "bad name")],
            )
            .await,
            400,
            60209,
        ),
        (
            a.post_form(&buckets_path(&vs, &rk), &[("Max", "1"), ("Interval", "10")])
                .await,
            400,
            60210,
        ),
    ];
    for (reply, status, code) in &cases {
        reply.expect_error(*status, *code);
    }
}

#[tokio::test]
async fn duplicate_errors_have_exactly_twilios_error_body() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, _) = one_of_each(&a).await.first_sids();
    let duplicate_name = a
        .post_form(&rate_limits_path(&vs), &[("UniqueName", "end_user_ip")])
        .await;
    duplicate_name.expect_error(400, 60208);
    let duplicate_interval = a
        .post_form(&buckets_path(&vs, &rk), &[("Max", "9"), ("Interval", "60")])
        .await;
    duplicate_interval.expect_error(400, 60211);
}

#[tokio::test]
async fn an_unknown_path_under_v2_is_a_twilio_404() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    for path in [
        "/v2/Nothing",
        "/v2/Services/VA00000000000000000000000000000000/Nothing",
    ] {
        a.get(path).await.expect_error(404, 20404);
    }
}

#[tokio::test]
async fn error_messages_name_the_parameter() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, _) = one_of_each(&a).await.first_sids();
    let message = a
        .post_form(&buckets_path(&vs, &rk), &[("Max", "5"), ("Interval", "0")])
        .await
        .error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: Interval"),
        "{message}"
    );
    let message = a
        .post_form(&buckets_path(&vs, &rk), &[("Max", "x"), ("Interval", "5")])
        .await
        .error_message(400, 60200);
    assert!(message.starts_with("Invalid parameter: Max"), "{message}");
}
