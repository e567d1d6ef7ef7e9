"""Event Streams v1 through twilio-python (`client.events.v1`): sinks, subscriptions, subscribed
events and types, and Verify events delivered to a webhook sink, signed as Twilio signs JSON
webhooks (checked with the SDK's own RequestValidator)."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from twilio.request_validator import RequestValidator

from helpers import ACCOUNT_A, TOKEN_A, assert_sid, twilio_error

PENDING = "com.twilio.accountsecurity.verify.verification.pending"
APPROVED = "com.twilio.accountsecurity.verify.verification.approved"
CANCELED = "com.twilio.accountsecurity.verify.verification.canceled"
TEST_EVENT = "com.twilio.eventstreams.test-event"
DELIVERY_TIMEOUT_S = 20


class Hook:
    """A webhook sink on a free loopback port; every request lands in `received`."""

    def __init__(self) -> None:
        self.received: "queue.Queue[dict]" = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.put(
                    {
                        "url": f"http://127.0.0.1:{self.server.server_address[1]}{self.path}",
                        "signature": self.headers.get("X-Twilio-Signature"),
                        "body": body.decode(),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def destination(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def next_event(self) -> dict:
        """The next request's only event, after checking its signature."""
        request = self.received.get(timeout=DELIVERY_TIMEOUT_S)
        assert RequestValidator(TOKEN_A).validate(request["url"], request["body"], request["signature"]), request
        events = json.loads(request["body"])
        assert isinstance(events, list) and len(events) == 1, events
        return events[0]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def events(client, base_url):
    client.events.base_url = base_url
    return client.events.v1


def make_sink(events, destination: str):
    return events.sinks.create(
        description="SDK sink",
        sink_configuration={"destination": destination, "method": "POST", "batch_events": False},
        sink_type="webhook",
    )


def test_sinks_are_created_active_and_managed(events):
    sink = make_sink(events, "http://127.0.0.1:9/hook")
    assert_sid(sink.sid, "DG")
    assert sink.status == "active"
    assert sink.sink_type == "webhook"
    assert sink.sink_configuration["destination"] == "http://127.0.0.1:9/hook"
    assert events.sinks(sink.sid).fetch().description == "SDK sink"
    assert events.sinks(sink.sid).update(description="renamed").description == "renamed"
    assert [s.sid for s in events.sinks.list()] == [sink.sid]
    assert events.sinks(sink.sid).sink_validate.create(test_id="anything").result == "valid"
    assert events.sinks(sink.sid).delete() is True
    with twilio_error(404, 20404):
        events.sinks(sink.sid).fetch()


def test_subscriptions_take_types_as_the_sdk_sends_them(events, client_b, base_url):
    sink = make_sink(events, "http://127.0.0.1:9/hook")
    sub = events.subscriptions.create(
        description="SDK subscription",
        sink_sid=sink.sid,
        types=[{"type": PENDING, "schema_version": 3}, {"type": APPROVED}],
    )
    assert_sid(sub.sid, "DF")
    assert sub.account_sid == ACCOUNT_A
    assert sub.sink_sid == sink.sid
    assert [s.sid for s in events.subscriptions.list(sink_sid=sink.sid)] == [sub.sid]
    subscribed = events.subscriptions(sub.sid).subscribed_events.list()
    assert sorted((t.type, t.schema_version) for t in subscribed) == [(APPROVED, 3), (PENDING, 3)]
    added = events.subscriptions(sub.sid).subscribed_events.create(type=CANCELED, schema_version=2)
    assert (added.type, added.schema_version) == (CANCELED, 2)
    assert events.subscriptions(sub.sid).subscribed_events(CANCELED).fetch().schema_version == 2
    assert events.subscriptions(sub.sid).subscribed_events(CANCELED).delete() is True
    assert events.subscriptions(sub.sid).update(description="new").description == "new"

    client_b.events.base_url = base_url
    with twilio_error(404, 20404):
        client_b.events.v1.subscriptions(sub.sid).fetch()
    with twilio_error(404, 20404):
        client_b.events.v1.sinks(sink.sid).fetch()

    assert events.subscriptions(sub.sid).delete() is True
    with twilio_error(404, 20404):
        events.subscriptions(sub.sid).fetch()


def test_event_types_list_the_verify_verification_events(events):
    names = {t.type for t in events.event_types.list()}
    assert {PENDING, APPROVED, CANCELED, TEST_EVENT} <= names
    pending = events.event_types(PENDING).fetch()
    assert pending.schema_id == "AccountSecurity.VerifyEventStreamEvent"
    assert pending.status == "available"


def test_verify_events_reach_the_webhook_sink_signed(events, client, control, hook):
    sink = make_sink(events, hook.destination)
    events.subscriptions.create(
        description="SDK subscription",
        sink_sid=sink.sid,
        types=[{"type": PENDING, "schema_version": 3}, {"type": APPROVED, "schema_version": 3}],
    )
    service = client.verify.v2.services.create(friendly_name="Events", verify_event_subscription_enabled=True)
    to = "+15005550006"
    verification = client.verify.v2.services(service.sid).verifications.create(to=to, channel="sms")
    code = control.code_sent_to(to)
    check = client.verify.v2.services(service.sid).verification_checks.create(to=to, code=code)
    assert check.status == "approved"

    pending = hook.next_event()
    assert pending["type"] == PENDING
    assert pending["data"]["verification_sid"] == verification.sid
    assert pending["data"]["verification_status"] == "PENDING"
    approved = hook.next_event()
    assert approved["type"] == APPROVED
    assert approved["data"]["verification_sid"] == verification.sid
    assert approved["specversion"] == "1.0"
    assert "code" not in approved["data"]

    assert events.sinks(sink.sid).sink_test.create().result == "submitted"
    assert hook.next_event()["type"] == TEST_EVENT
