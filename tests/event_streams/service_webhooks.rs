//! Verify's factor and challenge events delivered to Service Webhooks
//! (`/v2/Services/{Sid}/Webhooks`): form-encoded, signed as Twilio signs form webhooks (the
//! signature is recomputed here), in order, only the subscribed types, nothing for a disabled
//! or deleted webhook, and never a secret or a code.
//!
//! "Nothing arrived" is proven without waiting: a lane delivers in order, so when a webhook's
//! first request is the event made *after* the ones it must not get, it got none of them.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::harness::{ACCOUNT_A, Client, ServerOptions, TOKEN_A, TestServer};
use crate::receiver::{Received, Receiver};

const IDENTITY: &str = "ff483d1ff591898a9942916050d2ca3f";

/// The form fields of a delivery, in the order sent.
fn fields(r: &Received) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body)
        .unwrap_or_else(|e| panic!("not a form body ({e}): {:?}", r.body))
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Twilio's form-webhook signature, computed here independently: base64 HMAC-SHA1 of the URL
/// followed by every parameter's name and value, sorted by name.
#[track_caller]
fn assert_form_signed(r: &Received, token: &str) {
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let mut f = fields(r);
    f.sort();
    let mut data = r.url.clone();
    for (n, v) in &f {
        data.push_str(n);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(
        r.signature.as_deref(),
        Some(expected.as_str()),
        "X-Twilio-Signature of {}",
        r.url
    );
}

/// The code of a base32 `secret` (SHA-1, 6 digits, 30 s) at epoch second `at_s`.
fn code(secret: &str, at_s: i64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.trim_end_matches('=').as_bytes())
        .unwrap();
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    m.update(&((at_s / 30) as u64).to_be_bytes());
    let d = m.finalize().into_bytes();
    let o = (d[d.len() - 1] & 0xf) as usize;
    let n = (u32::from(d[o]) & 0x7f) << 24
        | u32::from(d[o + 1]) << 16
        | u32::from(d[o + 2]) << 8
        | u32::from(d[o + 3]);
    format!("{:06}", n % 1_000_000)
}

/// Moves the account's clock to 5 s past a whole minute, about a day ahead; returns it.
async fn aligned_clock(c: &Client) -> i64 {
    let now = c.get("/emulator/v1/Clock").await.expect(200)["now_ms"]
        .as_i64()
        .unwrap()
        / 1000;
    let target = (now + 86_400) / 60 * 60 + 65;
    let at = chrono::DateTime::from_timestamp(target, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    c.post_form("/emulator/v1/Clock", &[("Now", &at)])
        .await
        .expect(200);
    target
}

async fn service(c: &Client) -> String {
    let s = c
        .post_form("/v2/Services", &[("FriendlyName", "Hook app")])
        .await
        .expect(201);
    s["sid"].as_str().unwrap().to_owned()
}

/// A webhook of `vs` to `url`; its SID.
async fn webhook(
    c: &Client,
    vs: &str,
    url: &str,
    types: &[&str],
    extra: &[(&str, &str)],
) -> String {
    let mut form = vec![("FriendlyName", "hook"), ("WebhookUrl", url)];
    form.extend(types.iter().map(|t| ("EventTypes", *t)));
    form.extend_from_slice(extra);
    let w = c
        .post_form(&format!("/v2/Services/{vs}/Webhooks"), &form)
        .await
        .expect(201);
    w["sid"].as_str().unwrap().to_owned()
}

fn factors(vs: &str) -> String {
    format!("/v2/Services/{vs}/Entities/{IDENTITY}/Factors")
}

async fn enrol(c: &Client, vs: &str, name: &str) -> Value {
    c.post_form(
        &factors(vs),
        &[
            ("FriendlyName", name),
            ("FactorType", "totp"),
            ("Metadata", r#"{"os": "test"}"#),
        ],
    )
    .await
    .expect(201)
}

fn sid(v: &Value) -> String {
    v["sid"].as_str().unwrap().to_owned()
}

/// The next delivery of `r`: signed, with the common fields right; its fields.
async fn next_event(
    r: &mut Receiver,
    event_type: &str,
    vs: &str,
    factor: &str,
    secrets: &[&str],
) -> Vec<(String, String)> {
    let got = r.next_delivered().await;
    assert_form_signed(&got, TOKEN_A);
    let f = fields(&got);
    assert_eq!(field(&f, "type"), Some(event_type), "{f:?}");
    assert_eq!(field(&f, "account_sid"), Some(ACCOUNT_A));
    assert_eq!(field(&f, "service_sid"), Some(vs));
    assert_eq!(field(&f, "entity_identity"), Some(IDENTITY));
    assert_eq!(field(&f, "factor_sid"), Some(factor));
    assert_eq!(field(&f, "factor_type"), Some("totp"));
    let uuid = field(&f, "uuid").expect("a uuid");
    assert!(
        uuid.len() == 36 && uuid.chars().filter(|c| *c == '-').count() == 4,
        "{uuid}"
    );
    let body = String::from_utf8_lossy(&got.body);
    for s in secrets {
        assert!(!body.contains(s), "a secret or code in the payload: {body}");
    }
    assert!(
        f.iter()
            .all(|(n, v)| !n.contains("secret") && !v.is_empty()),
        "{f:?}"
    );
    f
}

#[tokio::test]
async fn factor_and_challenge_events_reach_the_subscribed_webhooks_in_order_and_signed() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let vs = service(&c).await;
    let mut all = Receiver::start().await;
    let mut some = Receiver::start().await;
    let mut off = Receiver::start().await;
    webhook(&c, &vs, &all.destination(), &["*"], &[]).await;
    webhook(
        &c,
        &vs,
        &some.destination(),
        &["factor.verified", "challenge.approved"],
        &[("Version", "v1")],
    )
    .await;
    let disabled = webhook(
        &c,
        &vs,
        &off.destination(),
        &["*"],
        &[("Status", "disabled")],
    )
    .await;

    // A factor created, verified by AuthPayload, and approving a challenge; a second factor
    // created and deleted; then the entity deleted, which deletes the first factor.
    let t = aligned_clock(&c).await;
    let f1 = enrol(&c, &vs, "Phone one").await;
    let (yf1, secret) = (
        sid(&f1),
        f1["binding"]["secret"].as_str().unwrap().to_owned(),
    );
    let code1 = code(&secret, t);
    let verified = c
        .post_form(
            &format!("{}/{yf1}", factors(&vs)),
            &[("AuthPayload", &code1)],
        )
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");
    let code2 = code(&secret, t + 30);
    let ch = c
        .post_form(
            &format!("/v2/Services/{vs}/Entities/{IDENTITY}/Challenges"),
            &[
                ("FactorSid", &yf1),
                ("AuthPayload", &code2),
                ("Details.Message", "Log in?"),
                ("HiddenDetails", r#"{"ip": "203.0.113.5"}"#),
            ],
        )
        .await
        .expect(201);
    assert_eq!(ch["status"], "approved");
    let yc = sid(&ch);
    let f2 = enrol(&c, &vs, "Phone two").await;
    let yf2 = sid(&f2);
    c.delete(&format!("{}/{yf2}", factors(&vs)))
        .await
        .expect(204);
    c.delete(&format!("/v2/Services/{vs}/Entities/{IDENTITY}"))
        .await
        .expect(204);

    let secrets = [secret.as_str(), code1.as_str(), code2.as_str()];
    // Every event, in order, to the webhook of `*` (v2). Once the last one arrived, the router
    // has routed them all (it queues each event for every webhook at once).
    let e = next_event(&mut all, "factor.created", &vs, &yf1, &secrets).await;
    assert_eq!(field(&e, "factor_friendly_name"), Some("Phone one"));
    assert_eq!(field(&e, "factor_metadata"), Some(r#"{"os":"test"}"#));
    assert_eq!(field(&e, "challenge_sid"), None);
    let verified_uuid = field(
        &next_event(&mut all, "factor.verified", &vs, &yf1, &secrets).await,
        "uuid",
    )
    .unwrap()
    .to_owned();
    let e = next_event(&mut all, "challenge.approved", &vs, &yf1, &secrets).await;
    assert_eq!(field(&e, "challenge_sid"), Some(yc.as_str()));
    assert_eq!(field(&e, "status"), Some("approved"));
    let details: Value = serde_json::from_str(field(&e, "challenge_details").unwrap()).unwrap();
    assert_eq!(details["message"], "Log in?");
    let hidden: Value =
        serde_json::from_str(field(&e, "challenge_hidden_details").unwrap()).unwrap();
    assert_eq!(hidden["ip"], "203.0.113.5");
    next_event(&mut all, "factor.created", &vs, &yf2, &secrets).await;
    let e = next_event(&mut all, "factor.deleted", &vs, &yf2, &secrets).await;
    assert_eq!(field(&e, "factor_friendly_name"), Some("Phone two"));
    next_event(&mut all, "factor.deleted", &vs, &yf1, &secrets).await;

    // Only the subscribed types (v1: no metadata, no status) to the other.
    let e = next_event(&mut some, "factor.verified", &vs, &yf1, &secrets).await;
    assert_eq!(field(&e, "factor_metadata"), None);
    // One uuid per event, whichever webhook it goes to.
    assert_eq!(field(&e, "uuid"), Some(verified_uuid.as_str()));
    let e = next_event(&mut some, "challenge.approved", &vs, &yf1, &secrets).await;
    assert_eq!(field(&e, "status"), None);
    assert_eq!(field(&e, "challenge_metadata"), None);

    // The disabled webhook got nothing: enabled now, its first request is the next event.
    c.post_form(
        &format!("/v2/Services/{vs}/Webhooks/{disabled}"),
        &[("Status", "enabled")],
    )
    .await
    .expect(200);
    let f3 = enrol(&c, &vs, "Phone three").await;
    let yf3 = sid(&f3);
    next_event(&mut off, "factor.created", &vs, &yf3, &secrets).await;
    next_event(&mut all, "factor.created", &vs, &yf3, &secrets).await;
    assert!(off.pending().is_empty());
    assert!(all.pending().is_empty());
    assert!(
        some.pending().is_empty(),
        "factor.created is not among its types"
    );
}

#[tokio::test]
async fn a_deleted_webhook_gets_nothing_more_and_another_account_gets_nothing() {
    let server = TestServer::start(ServerOptions::new()).await;
    let (a, b) = (server.a(), server.b());
    let vs = service(&a).await;
    let mut r = Receiver::start().await;
    let first = webhook(
        &a,
        &vs,
        &format!("{}?w=first", r.destination()),
        &["*"],
        &[],
    )
    .await;
    // Account B's webhook of its own service, at the same receiver.
    let vs_b = service(&b).await;
    webhook(&b, &vs_b, &format!("{}?w=b", r.destination()), &["*"], &[]).await;
    // B cannot attach a webhook to A's service.
    b.post_form(
        &format!("/v2/Services/{vs}/Webhooks"),
        &[
            ("FriendlyName", "theirs"),
            ("WebhookUrl", &r.destination()),
            ("EventTypes", "*"),
        ],
    )
    .await
    .expect_error(404, 20404);

    let f1 = enrol(&a, &vs, "Phone one").await;
    let got = r.next_delivered().await;
    assert!(got.url.ends_with("?w=first"), "{}", got.url);
    assert_form_signed(&got, TOKEN_A);
    assert_eq!(field(&fields(&got), "factor_sid"), Some(sid(&f1).as_str()));

    a.delete(&format!("/v2/Services/{vs}/Webhooks/{first}"))
        .await
        .expect(204);
    a.get(&format!("/v2/Services/{vs}/Webhooks/{first}"))
        .await
        .expect_error(404, 20404);
    a.delete(&format!("{}/{}", factors(&vs), sid(&f1)))
        .await
        .expect(204);
    // A new webhook at the same receiver (of `factor.created` only, so the `factor.deleted`
    // above cannot be routed to it): its first request is the event made after the deletion.
    webhook(
        &a,
        &vs,
        &format!("{}?w=second", r.destination()),
        &["factor.created"],
        &[],
    )
    .await;
    let f2 = enrol(&a, &vs, "Phone two").await;
    let got = r.next_delivered().await;
    assert!(got.url.ends_with("?w=second"), "{}", got.url);
    assert_eq!(field(&fields(&got), "type"), Some("factor.created"));
    assert_eq!(field(&fields(&got), "factor_sid"), Some(sid(&f2).as_str()));
    let rest: Vec<String> = r.pending().into_iter().map(|x| x.url).collect();
    assert!(rest.is_empty(), "unexpected deliveries: {rest:?}");
}
