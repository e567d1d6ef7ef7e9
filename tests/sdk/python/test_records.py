"""Verification Attempts, the Safe List, Templates, Forms and Messaging Configurations through
twilio-python (`client.verify.v2.verification_attempts`, `safelist`, `templates`, `forms`,
`services(...).messaging_configurations`)."""

from __future__ import annotations

import itertools

from helpers import ACCOUNT_A, assert_datetime, assert_sid, twilio_error, twilio_page_error

_numbers = itertools.count(1)


def new_number() -> str:
    return f"+1500666{next(_numbers):04d}"


def test_attempts_are_listed_fetched_filtered_and_summarised(client, client_b, service, control):
    one, two = new_number(), "+447700900456"
    first = service.verifications.create(to=one, channel="sms")
    resent = service.verifications.create(to=one, channel="sms")
    other = service.verifications.create(to=two, channel="sms")
    assert resent.sid == first.sid
    sent = [a["attempt_sid"] for a in resent.send_code_attempts + other.send_code_attempts]

    attempts = client.verify.v2.verification_attempts.list()
    assert [a.sid for a in attempts] == sent
    for a in attempts:
        assert_sid(a.sid, "VL")
        assert a.account_sid == ACCOUNT_A
        assert a.service_sid == service.sid
        assert a.conversion_status == "unconverted"
        assert a.channel == "sms"
        assert_datetime(a.date_created)
        assert a.channel_data["status"] == "unconfirmed"

    fetched = client.verify.v2.verification_attempts(sent[2]).fetch()
    assert fetched.verification_sid == other.sid
    assert fetched.channel_data["to"] == two
    assert fetched.channel_data["country"] == "GB"

    code = control.code_sent_to(one)
    check = service.verification_checks.create(to=one, code=code)
    assert check.status == "approved"

    converted = client.verify.v2.verification_attempts.list(status="converted")
    assert [a.sid for a in converted] == sent[:2]
    assert all(a.conversion_status == "converted" for a in converted)
    assert [a.sid for a in client.verify.v2.verification_attempts.list(status="unconverted")] == sent[2:]
    assert [a.sid for a in client.verify.v2.verification_attempts.list(verification_sid=first.sid)] == sent[:2]
    assert [a.sid for a in client.verify.v2.verification_attempts.list(channel_data_to=two)] == sent[2:]
    assert [a.sid for a in client.verify.v2.verification_attempts.list(country="GB")] == sent[2:]
    assert [a.sid for a in client.verify.v2.verification_attempts.list(verify_service_sid=service.sid)] == sent
    assert client.verify.v2.verification_attempts.list(channel="call") == []
    # The SDK pages through every page by itself.
    assert [a.sid for a in client.verify.v2.verification_attempts.list(page_size=1)] == sent

    summary = client.verify.v2.verification_attempts_summary().fetch()
    assert summary.total_attempts == 3
    assert summary.total_converted == 2
    assert summary.total_unconverted == 1
    assert summary.conversion_rate_percentage == "66.666666667"
    assert client.verify.v2.verification_attempts_summary().fetch(country="GB").total_attempts == 1
    assert (
        client.verify.v2.verification_attempts_summary().fetch(destination_prefix="+1500666").total_converted
        == 2
    )

    assert client_b.verify.v2.verification_attempts.list() == []
    with twilio_error(404, 20404):
        client_b.verify.v2.verification_attempts(sent[0]).fetch()
    with twilio_page_error(400, 60200):
        client.verify.v2.verification_attempts.list(channel="fax")


def test_safe_list_numbers_are_added_fetched_and_deleted(client, client_b):
    number = new_number()
    entry = client.verify.v2.safelist.create(phone_number=number)
    assert_sid(entry.sid, "GN")
    assert entry.phone_number == number
    fetched = client.verify.v2.safelist(number).fetch()
    assert fetched.sid == entry.sid
    with twilio_error(404, 20404):
        client_b.verify.v2.safelist(number).fetch()
    assert client.verify.v2.safelist(number).delete() is True
    with twilio_error(404, 20404):
        client.verify.v2.safelist(number).fetch()
    with twilio_error(400, 60200):
        client.verify.v2.safelist.create(phone_number="not a number")


def test_templates_are_listed_and_used_by_a_start(client, service):
    templates = client.verify.v2.templates.list()
    assert templates, "the catalogue is empty"
    default = templates[0]
    assert_sid(default.sid, "HJ")
    assert default.account_sid == ACCOUNT_A
    assert default.translations["en"]["is_default_translation"] is True
    assert [t.sid for t in client.verify.v2.templates.list(friendly_name=default.friendly_name)] == [default.sid]
    started = service.verifications.create(to=new_number(), channel="sms", template_sid=default.sid)
    assert started.status == "pending"
    with twilio_error(400, 60200):
        service.verifications.create(to=new_number(), channel="sms", template_sid="HJ" + "f" * 32)


def test_the_push_form_is_fetched(client):
    form = client.verify.v2.forms("form-push").fetch()
    assert form.form_type == "form-push"
    assert set(form.forms) >= {"create_factor", "verify_factor", "create_challenge"}
    assert form.url.endswith("/v2/Forms/form-push")


def test_messaging_configurations_are_managed_per_country(client, client_b, service):
    mg = lambda n: f"MG{n:032x}"  # noqa: E731
    created = service.messaging_configurations.create(country="US", messaging_service_sid=mg(1))
    assert created.country == "US"
    assert created.service_sid == service.sid
    assert created.messaging_service_sid == mg(1)
    assert_datetime(created.date_created)
    service.messaging_configurations.create(country="all", messaging_service_sid=mg(2))
    assert [m.country for m in service.messaging_configurations.list()] == ["US", "all"]
    assert [m.country for m in service.messaging_configurations.list(page_size=1)] == ["US", "all"]
    updated = service.messaging_configurations("US").update(messaging_service_sid=mg(3))
    assert updated.messaging_service_sid == mg(3)
    assert service.messaging_configurations("US").fetch().messaging_service_sid == mg(3)
    with twilio_error(404, 20404):
        client_b.verify.v2.services(service.sid).messaging_configurations("US").fetch()
    with twilio_error(400, 60200):
        service.messaging_configurations.create(country="US", messaging_service_sid=mg(4))
    assert service.messaging_configurations("US").delete() is True
    with twilio_error(404, 20404):
        service.messaging_configurations("US").fetch()


def test_webhooks_are_created_listed_updated_and_deleted(client_b, service):
    hook = service.webhooks.create(
        friendly_name="push events",
        event_types=["factor.created", "challenge.approved"],
        webhook_url="https://example.com/hook",
    )
    assert_sid(hook.sid, "YW")
    assert hook.event_types == ["factor.created", "challenge.approved"]
    assert hook.status == "enabled"
    assert hook.version == "v2"
    assert hook.webhook_method == "POST"
    assert [w.sid for w in service.webhooks.list()] == [hook.sid]
    updated = service.webhooks(hook.sid).update(event_types=["*"], status="disabled")
    assert updated.event_types == ["*"]
    assert updated.status == "disabled"
    assert service.webhooks(hook.sid).fetch().webhook_url == "https://example.com/hook"
    with twilio_error(404, 20404):
        client_b.verify.v2.services(service.sid).webhooks(hook.sid).fetch()
    with twilio_error(400, 60200):
        service.webhooks.create(friendly_name="x", event_types=["nope"], webhook_url="https://example.com")
    assert service.webhooks(hook.sid).delete() is True
    with twilio_error(404, 20404):
        service.webhooks(hook.sid).fetch()


def test_access_tokens_are_created_and_fetched(client_b, service):
    token = service.access_tokens.create(
        identity="ff483d1ff591898a9942916050d2ca3f", factor_type="push", factor_friendly_name="phone", ttl=120
    )
    assert_sid(token.sid, "YK")
    assert token.ttl == 120
    assert token.factor_type == "push"
    assert token.token.count(".") == 2
    assert service.access_tokens(token.sid).fetch().token == token.token
    with twilio_error(404, 20404):
        client_b.verify.v2.services(service.sid).access_tokens(token.sid).fetch()
    with twilio_error(400, 60200):
        service.access_tokens.create(identity="x", factor_type="push", ttl=10)
