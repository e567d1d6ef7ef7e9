"""Example pytest suite: the `verilimit` fixture and the official twilio SDK, nothing else.

Install the verilimit wheel, twilio and pytest into an environment and run `pytest` here: the
plugin starts one server for the session and resets it before each test.
"""

import contextlib

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

import verilimit as verilimit_pkg


def new_service(vl, **kwargs):
    return vl.client.verify.v2.services.create(friendly_name="Example app", **kwargs)


@contextlib.contextmanager
def raises_twilio(status, code):
    """The block raises TwilioRestException with this HTTP status and Twilio error code."""
    with pytest.raises(TwilioRestException) as info:
        yield info
    err = info.value
    assert (err.status, err.code) == (status, code), f"got {err.status} / {err.code}: {err.msg}"


def test_the_fixture_exposes_the_server_its_account_and_a_client(verilimit):
    assert verilimit.url.startswith("http://127.0.0.1:")
    assert verilimit.account_sid.startswith("AC") and len(verilimit.account_sid) == 34
    assert verilimit.auth_token
    assert verilimit.client.account_sid == verilimit.account_sid
    assert verilimit.client.verify.base_url == verilimit.url
    assert verilimit.client.verify.v2.services.list() == []


def test_start_a_verification_read_the_code_and_check_it(verilimit):
    service = new_service(verilimit, code_length=6)
    to = "+15005550006"
    verification = service.verifications.create(to=to, channel="sms")
    assert verification.status == "pending"

    code = verilimit.latest_code(to)
    assert code.isdigit() and len(code) == 6
    assert [m["verification_sid"] for m in verilimit.outbox(to)] == [verification.sid]

    wrong = code[:-1] + ("2" if code.endswith("1") else "1")
    assert service.verification_checks.create(to=to, code=wrong).status == "pending"
    check = service.verification_checks.create(to=to, code=code)
    assert check.status == "approved"
    assert check.valid is True


def test_a_bucket_refuses_with_429_until_the_clock_moves_past_its_window(verilimit):
    service = new_service(verilimit)
    rate_limit = service.rate_limits.create(unique_name="end_user_ip")
    rate_limit.buckets.create(max=2, interval=60)

    def start(to, ip):
        return service.verifications.create(to=to, channel="sms", rate_limits={"end_user_ip": ip})

    start("+15005550001", "203.0.113.7")
    start("+15005550002", "203.0.113.7")
    with raises_twilio(429, 20429):
        start("+15005550003", "203.0.113.7")
    start("+15005550004", "198.51.100.1")  # another value has its own count

    [row] = verilimit.usage(service.sid, value="203.0.113.7")
    assert (row["unique_name"], row["count"], row["remaining"]) == ("end_user_ip", 2, 0)
    assert 1 <= row["retry_after"] <= 60

    clock = verilimit.advance_clock(row["retry_after"])
    assert clock["offset_ms"] == row["retry_after"] * 1000
    assert start("+15005550003", "203.0.113.7").status == "pending"


def test_a_code_expires_when_the_clock_moves_past_its_ten_minutes(verilimit):
    service = new_service(verilimit)
    to = "+15005550006"
    service.verifications.create(to=to, channel="sms")
    code = verilimit.latest_code(to)
    verilimit.advance_clock(601)
    with raises_twilio(404, 20404):
        service.verification_checks.create(to=to, code=code)


def test_reset_forgets_services_codes_and_the_clock(verilimit):
    service = new_service(verilimit)
    service.verifications.create(to="+15005550006", channel="sms")
    verilimit.advance_clock(3600)

    verilimit.reset()
    with raises_twilio(404, 20404):
        service.fetch()
    assert verilimit.outbox() == []
    with pytest.raises(LookupError):
        verilimit.latest_code("+15005550006")
    assert verilimit.clock()["offset_ms"] == 0


def test_every_test_starts_from_a_reset_server(verilimit):
    # The tests above left services, codes and a moved clock behind.
    assert verilimit.client.verify.v2.services.list() == []
    assert verilimit.outbox() == []
    assert verilimit.clock()["offset_ms"] == 0


def test_the_context_manager_starts_a_server_of_its_own(verilimit):
    account_sid = "AC" + "5e" * 16
    with verilimit_pkg.Server(account_sid=account_sid, auth_token="another-token") as vl:
        assert vl.url != verilimit.url
        service = vl.client.verify.v2.services.create(friendly_name="Other")
        assert service.account_sid == account_sid
        service.verifications.create(to="+15005550006", channel="sms")
        check = service.verification_checks.create(to="+15005550006", code=vl.latest_code("+15005550006"))
        assert check.status == "approved"
        client = vl.client
    # Stopped: nothing answers there any more.
    with pytest.raises(requests.exceptions.ConnectionError):
        client.verify.v2.services.list()
