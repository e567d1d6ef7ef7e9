"""Verifications, Verification Checks and Service Rate Limits through twilio-python."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import requests
from twilio.base import values
from twilio.base.exceptions import TwilioRestException

from helpers import ACCOUNT_A, TOKEN_A, assert_datetime, assert_sid, twilio_error, wrong_code

_numbers = itertools.count(1)


def new_number() -> str:
    """A fresh E.164 number, so no test trips the per-`To` send limit (60203) by accident."""
    return f"+1500555{next(_numbers):04d}"


@pytest.fixture
def limited_service(client):
    """A service with rate limit `end_user_ip` and one bucket: 3 per 60 s."""
    svc = client.verify.v2.services.create(friendly_name="Rate limited", code_length=6)
    rl = svc.rate_limits.create(unique_name="end_user_ip", description="per IP")
    bucket = rl.buckets.create(max=3, interval=60)
    return svc, rl, bucket


def start(service, ip=None, to=None, **kwargs):
    params = dict(to=to or new_number(), channel="sms", **kwargs)
    if ip is not None:
        params["rate_limits"] = {"end_user_ip": ip}
    return service.verifications.create(**params)


# --- starting a verification ----------------------------------------------------------------


def test_start_returns_a_pending_verification(client, service, control, base_url):
    to = new_number()
    response = service.verifications.create_with_http_info(to=to, channel="sms")
    assert response.status_code == 201
    ver = response.data
    assert_sid(ver.sid, "VE")
    assert ver.service_sid == service.sid
    assert ver.account_sid == ACCOUNT_A
    assert ver.to == to
    assert ver.channel == "sms"
    assert ver.status == "pending"
    assert ver.valid is False
    assert_datetime(ver.date_created)
    assert ver.url == f"{base_url}/v2/Services/{service.sid}/Verifications/{ver.sid}"
    assert len(ver.send_code_attempts) == 1
    # Twilio names the attempt's channel in upper case for SMS (the spec's examples: "SMS").
    assert ver.send_code_attempts[0]["channel"] == "SMS"
    assert_sid(ver.send_code_attempts[0]["attempt_sid"], "VL")

    messages = control.outbox(To=to)
    assert len(messages) == 1
    msg = messages[0]
    assert msg["to"] == to
    assert msg["channel"] == "sms"
    assert msg["verification_sid"] == ver.sid
    assert msg["service_sid"] == service.sid
    assert msg["account_sid"] == ACCOUNT_A
    assert msg["code"].isdigit() and len(msg["code"]) == service.code_length == 6


def test_code_has_the_services_code_length(client, control):
    svc = client.verify.v2.services.create(friendly_name="Long codes", code_length=9)
    to = new_number()
    svc.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)
    assert code.isdigit() and len(code) == 9


def test_fetch_of_a_pending_verification(client, service):
    ver = start(service)
    response = service.verifications(ver.sid).fetch_with_http_info()
    assert response.status_code == 200
    fetched = response.data
    assert fetched.sid == ver.sid
    assert fetched.status == "pending"
    assert fetched.to == ver.to


def test_resend_while_pending_keeps_the_sid_and_adds_an_attempt(client, service, control):
    to = new_number()
    first = service.verifications.create(to=to, channel="sms")
    second = service.verifications.create(to=to, channel="sms")
    assert second.sid == first.sid
    assert second.status == "pending"
    assert len(second.send_code_attempts) == 2
    attempt_sids = [a["attempt_sid"] for a in second.send_code_attempts]
    assert len(set(attempt_sids)) == 2
    for sid in attempt_sids:
        assert_sid(sid, "VL")
    assert second.send_code_attempts[0]["attempt_sid"] == first.send_code_attempts[0]["attempt_sid"]
    # the same code is sent again
    codes = [m["code"] for m in control.outbox(To=to)]
    assert len(codes) == 2
    assert codes[0] == codes[1]
    assert len(service.verifications(first.sid).fetch().send_code_attempts) == 2


def test_start_on_an_unknown_service_is_404(client):
    with twilio_error(404, 20404):
        client.verify.v2.services("VA" + "0" * 32).verifications.create(to=new_number(), channel="sms")


def test_start_without_to_is_20001(client, service):
    with twilio_error(400, 20001):
        service.verifications.create(to=values.unset, channel="sms")


def test_start_with_an_unknown_channel_is_60200(client, service):
    with twilio_error(400, 60200):
        service.verifications.create(to=new_number(), channel="pigeon")


# --- checking a code ------------------------------------------------------------------------


def test_right_code_approves_and_the_verification_is_gone(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)

    check = service.verification_checks.create(to=to, code=code)
    assert check.status == "approved"
    assert check.valid is True
    assert check.sid == ver.sid
    assert check.to == to
    assert check.channel == "sms"
    assert check.service_sid == service.sid
    assert check.account_sid == ACCOUNT_A

    with twilio_error(404, 20404):
        service.verifications(ver.sid).fetch()
    with twilio_error(404, 20404):
        service.verification_checks.create(to=to, code=code)


def test_wrong_code_leaves_the_verification_pending(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)

    check = service.verification_checks.create(to=to, code=wrong_code(code))
    assert check.status == "pending"
    assert check.valid is False
    assert check.sid == ver.sid
    assert service.verifications(ver.sid).fetch().status == "pending"

    # the right code still works afterwards
    ok = service.verification_checks.create(to=to, code=code)
    assert (ok.status, ok.valid) == ("approved", True)


def test_check_by_verification_sid(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)
    check = service.verification_checks.create(verification_sid=ver.sid, code=code)
    assert (check.status, check.valid, check.sid) == ("approved", True, ver.sid)


def test_check_with_neither_to_nor_verification_sid_is_60221(client, service):
    start(service)
    with twilio_error(400, 60221):
        service.verification_checks.create(code="123456")


def test_check_for_a_number_with_no_verification_is_404(client, service):
    with twilio_error(404, 20404):
        service.verification_checks.create(to=new_number(), code="123456")


def test_custom_code_is_sent_and_approves(client, control):
    svc = client.verify.v2.services.create(friendly_name="Custom codes", custom_code_enabled=True)
    assert svc.custom_code_enabled is True
    to = new_number()
    ver = svc.verifications.create(to=to, channel="sms", custom_code="867530")
    assert ver.status == "pending"
    assert control.code_sent_to(to) == "867530"

    wrong = svc.verification_checks.create(to=to, code="867531")
    assert (wrong.status, wrong.valid) == ("pending", False)
    check = svc.verification_checks.create(to=to, code="867530")
    assert (check.status, check.valid) == ("approved", True)
    with twilio_error(404, 20404):
        svc.verifications(ver.sid).fetch()


def test_cancel_sets_status_canceled_and_ends_the_verification(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)

    response = service.verifications(ver.sid).update_with_http_info(status="canceled")
    assert response.status_code == 200
    canceled = response.data
    assert canceled.sid == ver.sid
    assert canceled.status == "canceled"

    with twilio_error(404, 20404):
        service.verifications(ver.sid).fetch()
    with twilio_error(404, 20404):
        service.verification_checks.create(to=to, code=code)


def test_approve_by_update(client, service):
    ver = start(service)
    approved = service.verifications(ver.sid).update(status="approved")
    assert approved.status == "approved"
    with twilio_error(404, 20404):
        service.verifications(ver.sid).fetch()


def test_a_code_expires_after_ten_minutes(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)
    control.advance(601)
    with twilio_error(404, 20404):
        service.verification_checks.create(to=to, code=code)
    with twilio_error(404, 20404):
        service.verifications(ver.sid).fetch()


def test_outbox_is_scoped_to_the_account(client, service, control, control_b):
    to = new_number()
    start(service, to=to)
    assert len(control.outbox(To=to)) == 1
    assert control_b.outbox(To=to) == []


# --- Service Rate Limits ----------------------------------------------------------------------


def test_fourth_start_from_one_ip_is_429_20429(client, limited_service, control):
    svc, _rl, _bucket = limited_service
    for _ in range(3):
        assert start(svc, ip="10.0.0.1").status == "pending"

    refused_to = new_number()
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1", to=refused_to)
    # a refused request creates (and sends) nothing
    assert control.outbox(To=refused_to) == []

    # another IP has its own window
    assert start(svc, ip="10.0.0.2").status == "pending"

    # once the 60 s window has passed the first IP is admitted again
    control.advance(61)
    assert start(svc, ip="10.0.0.1").status == "pending"


def test_window_refills_to_exactly_max_after_the_interval(client, limited_service, control):
    svc, _rl, _bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")
    control.advance(61)
    for _ in range(3):
        assert start(svc, ip="10.0.0.1").status == "pending"
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")


def test_window_is_not_over_before_the_interval(client, limited_service, control):
    svc, _rl, _bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    control.advance(58)
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")


def test_429_carries_retry_after_and_the_rate_limit_name(client, limited_service, control, base_url):
    svc, _rl, _bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    control.advance(30)

    # Raw request: TwilioRestException does not expose response headers.
    resp = requests.post(
        f"{base_url}/v2/Services/{svc.sid}/Verifications",
        data={"To": new_number(), "Channel": "sms", "RateLimits": json.dumps({"end_user_ip": "10.0.0.1"})},
        auth=(ACCOUNT_A, TOKEN_A),
        timeout=10,
    )
    assert resp.status_code == 429
    body = resp.json()
    assert body["code"] == 20429
    assert body["status"] == 429
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20429"
    assert resp.headers["Twilio-Reached-Rate-Limit"] == "end_user_ip"
    retry_after = int(resp.headers["Retry-After"])
    assert 28 <= retry_after <= 30


def test_raising_max_applies_to_the_next_request(client, limited_service):
    svc, rl, bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")
    rl.buckets(bucket.sid).update(max=4)
    assert start(svc, ip="10.0.0.1").status == "pending"
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")


def test_deleting_the_bucket_lifts_the_limit(client, limited_service):
    svc, rl, bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    rl.buckets(bucket.sid).delete()
    # a rate limit with no buckets limits nothing
    for _ in range(5):
        assert start(svc, ip="10.0.0.1").status == "pending"


def test_admission_is_all_or_nothing_across_rate_limits(client, control):
    svc = client.verify.v2.services.create(friendly_name="Two limits")
    ip = svc.rate_limits.create(unique_name="end_user_ip")
    ip.buckets.create(max=2, interval=60)
    session = svc.rate_limits.create(unique_name="session_id")
    session.buckets.create(max=3, interval=60)

    def go(ip_value):
        return svc.verifications.create(
            to=new_number(),
            channel="sms",
            rate_limits={"end_user_ip": ip_value, "session_id": "S1"},
        )

    go("10.0.0.1")
    go("10.0.0.1")
    with twilio_error(429, 20429):
        go("10.0.0.1")  # refused by end_user_ip: must not count against session_id
    assert go("10.0.0.2").status == "pending"  # third admission for session S1
    with twilio_error(429, 20429):
        go("10.0.0.3")  # refused by session_id


def test_start_without_rate_limit_values_is_not_limited(client, limited_service):
    svc, _rl, _bucket = limited_service
    for _ in range(5):
        assert start(svc).status == "pending"


def test_unknown_rate_limit_key_is_60200(client, limited_service):
    svc, _rl, _bucket = limited_service
    with twilio_error(400, 60200):
        svc.verifications.create(to=new_number(), channel="sms", rate_limits={"no_such_limit": "x"})


def test_limits_are_per_service(client, limited_service):
    svc, _rl, _bucket = limited_service
    other = client.verify.v2.services.create(friendly_name="Other")
    other.rate_limits.create(unique_name="end_user_ip").buckets.create(max=3, interval=60)
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")
    assert start(other, ip="10.0.0.1").status == "pending"


def test_rate_limit_value_may_be_a_number(client, limited_service):
    svc, _rl, _bucket = limited_service
    for _ in range(3):
        svc.verifications.create(to=new_number(), channel="sms", rate_limits={"end_user_ip": 1234})
    with twilio_error(429, 20429):
        svc.verifications.create(to=new_number(), channel="sms", rate_limits={"end_user_ip": 1234})


def test_rate_limits_that_are_not_json_are_60200(client, limited_service, control):
    svc, _rl, _bucket = limited_service
    to = new_number()
    # serialize.object passes a str through unchanged, so this reaches the wire as-is
    with twilio_error(400, 60200):
        svc.verifications.create(to=to, channel="sms", rate_limits="not json")
    assert control.outbox(To=to) == []


def test_usage_reports_the_live_window(client, limited_service, control):
    svc, rl, bucket = limited_service
    start(svc, ip="10.0.0.1")
    start(svc, ip="10.0.0.1")
    resp = control.session.get(
        f"{control.base_url}/emulator/v1/Services/{svc.sid}/Usage", params={"Value": "10.0.0.1"}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    assert len(usage) == 1
    entry = usage[0]
    assert entry["rate_limit_sid"] == rl.sid
    assert entry["unique_name"] == "end_user_ip"
    assert entry["bucket_sid"] == bucket.sid
    assert (entry["max"], entry["interval"]) == (3, 60)
    assert entry["value"] == "10.0.0.1"
    assert (entry["count"], entry["remaining"]) == (2, 1)


def test_reset_of_counters_keeps_services_and_lifts_limits(client, limited_service, control):
    svc, rl, bucket = limited_service
    for _ in range(3):
        start(svc, ip="10.0.0.1")
    with twilio_error(429, 20429):
        start(svc, ip="10.0.0.1")
    control.reset(scope="counters")
    assert client.verify.v2.services(svc.sid).fetch().sid == svc.sid
    assert rl.buckets(bucket.sid).fetch().max == 3
    assert start(svc, ip="10.0.0.1").status == "pending"


def test_clock_advance_is_reported(client, control):
    before = control.clock()
    after = control.advance(61)
    assert after["offset_ms"] - before["offset_ms"] == 61_000
    assert after["now_ms"] - before["now_ms"] >= 61_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", after["now"])


def test_email_channel(client, service, control):
    to = "someone@example.com"
    ver = service.verifications.create(to=to, channel="email")
    assert (ver.to, ver.channel, ver.status) == (to, "email", "pending")
    code = control.code_sent_to(to)
    assert control.outbox(To=to)[0]["channel"] == "email"
    check = service.verification_checks.create(to=to, code=code)
    assert (check.status, check.valid, check.channel) == ("approved", True, "email")


# --- Verify's built-in limits ---------------------------------------------------------------


def test_sixth_send_to_one_number_within_ten_minutes_is_60203(client, service, control):
    to = new_number()
    for i in range(5):
        ver = service.verifications.create(to=to, channel="sms")
        assert len(ver.send_code_attempts) == i + 1
    with twilio_error(429, 60203):
        service.verifications.create(to=to, channel="sms")
    assert len(control.outbox(To=to)) == 5
    # another number is unaffected
    assert start(service).status == "pending"


def test_five_wrong_checks_end_the_verification(client, service, control):
    to = new_number()
    ver = service.verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)
    bad = wrong_code(code)
    for _ in range(4):
        check = service.verification_checks.create(to=to, code=bad)
        assert (check.status, check.valid) == ("pending", False)
    # The fifth wrong check uses the last attempt: it answers pending/false or already 60202.
    try:
        fifth = service.verification_checks.create(to=to, code=bad)
        assert (fifth.status, fifth.valid) == ("pending", False)
    except TwilioRestException as exc:
        assert (exc.status, exc.code) == (429, 60202), exc
    # Now even the right code must not approve: 60202, or 404 because the verification ended.
    with pytest.raises(TwilioRestException) as info:
        service.verification_checks.create(to=to, code=code)
    assert (info.value.status, info.value.code) in {(429, 60202), (404, 20404)}, info.value
    with twilio_error(404, 20404):
        service.verifications(ver.sid).fetch()
