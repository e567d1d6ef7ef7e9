"""Verify Service Webhooks through twilio-python: a webhook made with the SDK receives the
factor and challenge events of a TOTP enrolment (codes from pyotp), as form POSTs signed as
Twilio signs form webhooks, checked with the SDK's own RequestValidator."""

from __future__ import annotations

import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from helpers import ACCOUNT_A, TOKEN_A, assert_sid
from test_totp import IDENTITY, aligned_clock, code

DELIVERY_TIMEOUT_S = 20


class Receiver:
    """A webhook on a free loopback port; every request lands in `received`."""

    def __init__(self) -> None:
        self.received: "queue.Queue[dict]" = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                received.put(
                    {
                        "url": f"http://127.0.0.1:{self.server.server_address[1]}{self.path}",
                        "signature": self.headers.get("X-Twilio-Signature"),
                        "content_type": self.headers.get("Content-Type"),
                        "params": dict(parse_qsl(body, keep_blank_values=True)),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/verify-events"

    def next_event(self) -> dict:
        """The next request's parameters, after checking its signature."""
        request = self.received.get(timeout=DELIVERY_TIMEOUT_S)
        assert request["content_type"] == "application/x-www-form-urlencoded", request
        assert RequestValidator(TOKEN_A).validate(request["url"], request["params"], request["signature"]), request
        return request["params"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def test_a_webhook_receives_the_signed_events_of_a_totp_enrolment(service, control, receiver):
    webhook = service.webhooks.create(
        friendly_name="events",
        event_types=["factor.created", "factor.verified", "challenge.approved", "factor.deleted"],
        webhook_url=receiver.url,
    )
    assert_sid(webhook.sid, "YW")
    assert (webhook.status, webhook.version) == ("enabled", "v2")

    t = aligned_clock(control)
    entity = service.entities(IDENTITY)
    factor = entity.new_factors.create(friendly_name="My Phone", factor_type="totp")
    secret = factor.binding["secret"]
    first, second = code(secret, t), code(secret, t + 30)
    assert entity.factors(factor.sid).update(auth_payload=first).status == "verified"
    challenge = entity.challenges.create(auth_payload=second, factor_sid=factor.sid)
    assert challenge.status == "approved"
    entity.factors(factor.sid).delete()

    seen = [receiver.next_event() for _ in range(4)]
    assert [e["type"] for e in seen] == ["factor.created", "factor.verified", "challenge.approved", "factor.deleted"]
    for e in seen:
        assert e["account_sid"] == ACCOUNT_A
        assert e["service_sid"] == service.sid
        assert e["entity_identity"] == IDENTITY
        assert e["factor_sid"] == factor.sid
        assert e["factor_type"] == "totp"
        assert e["factor_friendly_name"] == "My Phone"
        assert len(e["uuid"]) == 36
        assert not {secret, first, second} & set(e.values()), e
    assert seen[2]["challenge_sid"] == challenge.sid
    assert seen[2]["status"] == "approved"
    assert len({e["uuid"] for e in seen}) == 4


def test_a_webhook_receives_the_signed_challenge_answers_of_a_push_device(service, control, base_url, receiver):
    from test_push import IDENTITY as PUSH_IDENTITY
    from test_push import device_post, enrol, new_device, phone_client

    service.webhooks.create(
        friendly_name="answers",
        event_types=["challenge.approved", "challenge.denied"],
        webhook_url=receiver.url,
    )
    device = new_device(control)
    token = service.access_tokens.create(identity=PUSH_IDENTITY, factor_type="push").token
    factor = enrol(phone_client(base_url, token), service.sid, device)
    device_post(
        control,
        f"Devices/{device['id']}/Factors/{factor.sid}/Verify",
        {"ServiceSid": service.sid, "Identity": PUSH_IDENTITY},
    )
    entity = service.entities(PUSH_IDENTITY)
    first = entity.challenges.create(
        factor_sid=factor.sid,
        details_message="Log in?",
        details_fields=[{"label": "IP", "value": "10.0.0.1"}],
    )
    second = entity.challenges.create(factor_sid=factor.sid, details_message="Pay 10 EUR?")
    device_post(control, f"Devices/{device['id']}/Challenges/{first.sid}", {"Status": "approved"})
    device_post(control, f"Devices/{device['id']}/Challenges/{second.sid}", {"Status": "denied"})

    approved, denied = receiver.next_event(), receiver.next_event()
    assert (approved["type"], approved["challenge_sid"], approved["status"]) == (
        "challenge.approved",
        first.sid,
        "approved",
    )
    assert (denied["type"], denied["challenge_sid"], denied["status"]) == ("challenge.denied", second.sid, "denied")
    for e in (approved, denied):
        assert e["factor_sid"] == factor.sid
        assert e["factor_type"] == "push"
        assert e["entity_identity"] == PUSH_IDENTITY
    assert '"label": "IP"' in approved["challenge_details"] or '"label":"IP"' in approved["challenge_details"]
