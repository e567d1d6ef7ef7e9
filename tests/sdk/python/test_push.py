"""Verify Push through twilio-python, with verilimit's simulated device playing the phone.

The application side (access token, challenge, notification) is twilio-python; the phone side is
`/emulator/v1/Devices`: a P-256 key kept by the server that enrols with `Binding.PublicKey`,
verifies the factor by signing its SID, and approves or denies challenges with an ES256 JWT over
the `Twilio-Verify-Signature-Fields`, as the Verify Push SDKs do. The factor itself is created
by twilio-python authenticated as the Push SDK is: Basic `token:<access token>`.
"""

from __future__ import annotations

from twilio.rest import Client

from helpers import assert_datetime, assert_sid, twilio_error

IDENTITY = "ff483d1ff591898a9942916050d2ca3f"


def new_device(control) -> dict:
    resp = control.session.post(control._url("Devices"), timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def device_post(control, path: str, data: dict) -> dict:
    resp = control.session.post(control._url(path), data=data, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def phone_client(base_url: str, token: str) -> Client:
    phone = Client("token", token)
    phone.verify.base_url = base_url
    return phone


def enrol(phone: Client, service_sid: str, device: dict):
    return phone.verify.v2.services(service_sid).entities(IDENTITY).new_factors.create(
        friendly_name="Pixel",
        factor_type="push",
        binding_alg="ES256",
        binding_public_key=device["public_key"],
        config_app_id="com.example.bank",
        config_notification_platform="none",
        config_sdk_version="0.12.0",
    )


def test_the_simulated_device_enrols_with_an_access_token_and_answers_challenges(service, control, base_url):
    device = new_device(control)
    token = service.access_tokens.create(identity=IDENTITY, factor_type="push").token
    factor = enrol(phone_client(base_url, token), service.sid, device)
    assert_sid(factor.sid, "YF")
    assert factor.factor_type == "push"
    assert factor.status == "unverified"
    assert factor.binding == {"public_key": device["public_key"], "alg": "ES256"}
    assert factor.config["notification_platform"] == "none"

    entity = service.entities(IDENTITY)
    with twilio_error(403, 60318):
        entity.challenges.create(factor_sid=factor.sid, details_message="Too early")
    verified = device_post(
        control,
        f"Devices/{device['id']}/Factors/{factor.sid}/Verify",
        {"ServiceSid": service.sid, "Identity": IDENTITY},
    )
    assert verified["status"] == "verified"
    assert entity.factors(factor.sid).fetch().status == "verified"

    challenge = entity.challenges.create(
        factor_sid=factor.sid,
        details_message="Log in to Bank?",
        details_fields=[{"label": "IP", "value": "10.0.0.1"}, {"label": "Browser", "value": "Firefox"}],
        hidden_details={"session": "s-1"},
    )
    assert_sid(challenge.sid, "YC")
    assert challenge.status == "pending"
    assert challenge.factor_type == "push"
    assert challenge.details == {
        "message": "Log in to Bank?",
        "fields": [{"label": "IP", "value": "10.0.0.1"}, {"label": "Browser", "value": "Firefox"}],
    }
    assert challenge.hidden_details == {"session": "s-1"}

    notification = entity.challenges(challenge.sid).notifications.create(ttl=150)
    assert_sid(notification.sid, "NT")
    assert (notification.challenge_sid, notification.priority, notification.ttl) == (challenge.sid, "high", 150)
    assert_datetime(notification.date_created)

    pending = control.session.get(control._url(f"Devices/{device['id']}/Challenges"), timeout=10).json()
    assert [c["sid"] for c in pending["challenges"]] == [challenge.sid]
    approved = device_post(control, f"Devices/{device['id']}/Challenges/{challenge.sid}", {"Status": "approved"})
    assert approved["status"] == "approved"
    fetched = entity.challenges(challenge.sid).fetch()
    assert fetched.status == "approved"
    assert_datetime(fetched.date_responded)

    second = entity.challenges.create(factor_sid=factor.sid, details_message="Pay 10 EUR?")
    device_post(control, f"Devices/{device['id']}/Challenges/{second.sid}", {"Status": "denied"})
    assert entity.challenges(second.sid).fetch().status == "denied"


def test_an_access_token_enrols_only_within_its_ttl(service, control, base_url):
    device = new_device(control)
    token = service.access_tokens.create(identity=IDENTITY, factor_type="push", ttl=60).token
    phone = phone_client(base_url, token)
    with twilio_error(401, 20003):
        phone.verify.v2.services(service.sid).entities("someone-else-0001").new_factors.create(
            friendly_name="Pixel",
            factor_type="push",
            binding_alg="ES256",
            binding_public_key=device["public_key"],
            config_app_id="com.example.bank",
            config_notification_platform="none",
            config_sdk_version="0.12.0",
        )
    control.advance(60)
    with twilio_error(401, 20003):
        enrol(phone, service.sid, device)


def test_an_unanswered_push_challenge_expires(service, control, base_url):
    device = new_device(control)
    entity = service.entities(IDENTITY)
    factor = entity.new_factors.create(
        friendly_name="Pixel",
        factor_type="push",
        binding_alg="ES256",
        binding_public_key=device["public_key"],
        config_app_id="com.example.bank",
        config_notification_platform="none",
        config_sdk_version="0.12.0",
    )
    device_post(
        control,
        f"Devices/{device['id']}/Factors/{factor.sid}/Verify",
        {"ServiceSid": service.sid, "Identity": IDENTITY},
    )
    challenge = entity.challenges.create(factor_sid=factor.sid, details_message="Log in?")
    control.advance(300)
    assert entity.challenges(challenge.sid).fetch().status == "expired"
    resp = control.session.post(
        control._url(f"Devices/{device['id']}/Challenges/{challenge.sid}"), data={"Status": "approved"}, timeout=10
    )
    assert (resp.status_code, resp.json()["code"]) == (403, 60323)
