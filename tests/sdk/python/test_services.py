"""Verify Services through twilio-python: create/fetch/update/list/stream/delete and validation."""

from __future__ import annotations

from datetime import timedelta

from twilio.base import values

from helpers import ACCOUNT_A, assert_datetime, assert_sid, twilio_error, twilio_page_error

APN = "CR" + "a" * 32
FCM = "CR" + "b" * 32
TEMPLATE = "HJ" + "c" * 32
MSG_SERVICE = "MG" + "d" * 32


def test_create_echoes_every_setting_it_was_given(client, base_url):
    response = client.verify.v2.services.create_with_http_info(
        friendly_name="My Verify Service",
        code_length=8,
        lookup_enabled=True,
        skip_sms_to_landlines=True,
        dtmf_input_required=True,
        tts_name="alice",
        psd2_enabled=True,
        do_not_share_warning_enabled=True,
        custom_code_enabled=True,
        push_include_date=True,
        push_apn_credential_sid=APN,
        push_fcm_credential_sid=FCM,
        totp_issuer="Example Issuer",
        totp_time_step=45,
        totp_code_length=7,
        totp_skew=2,
        default_template_sid=TEMPLATE,
        whatsapp_msg_service_sid=MSG_SERVICE,
        whatsapp_from="whatsapp:+15005550006",
        verify_event_subscription_enabled=True,
    )
    assert response.status_code == 201
    svc = response.data

    assert_sid(svc.sid, "VA")
    assert svc.account_sid == ACCOUNT_A
    assert svc.friendly_name == "My Verify Service"  # spaces survive the `+` form encoding
    assert svc.code_length == 8
    assert svc.lookup_enabled is True
    assert svc.skip_sms_to_landlines is True
    assert svc.dtmf_input_required is True
    assert svc.tts_name == "alice"
    assert svc.psd2_enabled is True
    assert svc.do_not_share_warning_enabled is True
    assert svc.custom_code_enabled is True
    assert svc.push["include_date"] is True
    assert svc.push["apn_credential_sid"] == APN
    assert svc.push["fcm_credential_sid"] == FCM
    assert svc.totp["issuer"] == "Example Issuer"
    assert svc.totp["time_step"] == 45
    assert svc.totp["code_length"] == 7
    assert svc.totp["skew"] == 2
    assert svc.default_template_sid == TEMPLATE
    assert svc.whatsapp["msg_service_sid"] == MSG_SERVICE
    assert svc.whatsapp["from"] == "whatsapp:+15005550006"
    assert svc.verify_event_subscription_enabled is True

    created = assert_datetime(svc.date_created)
    assert assert_datetime(svc.date_updated) == created
    assert svc.url == f"{base_url}/v2/Services/{svc.sid}"
    assert svc.links["rate_limits"] == f"{base_url}/v2/Services/{svc.sid}/RateLimits"
    assert svc.links["verifications"] == f"{base_url}/v2/Services/{svc.sid}/Verifications"


def test_create_with_only_a_friendly_name_uses_defaults(client):
    svc = client.verify.v2.services.create(friendly_name="Defaults")
    assert_sid(svc.sid, "VA")
    assert svc.friendly_name == "Defaults"
    assert isinstance(svc.code_length, int) and 4 <= svc.code_length <= 10
    # the spec documents Push.IncludeDate as "Default: false"
    assert svc.push["include_date"] is False


def test_fetch_returns_the_created_service(client):
    created = client.verify.v2.services.create(
        friendly_name="Fetch me", code_length=5, lookup_enabled=True, totp_issuer="Issuer"
    )
    response = client.verify.v2.services(created.sid).fetch_with_http_info()
    assert response.status_code == 200
    fetched = response.data
    assert fetched.sid == created.sid
    assert fetched.account_sid == ACCOUNT_A
    assert fetched.friendly_name == "Fetch me"
    assert fetched.code_length == 5
    assert fetched.lookup_enabled is True
    assert fetched.totp["issuer"] == "Issuer"
    assert fetched.date_created == created.date_created
    assert fetched.url == created.url


def test_update_changes_only_the_given_fields(client, control):
    created = client.verify.v2.services.create(
        friendly_name="Before",
        code_length=6,
        lookup_enabled=True,
        psd2_enabled=False,
        totp_issuer="Keep Me",
    )
    control.advance(5)

    response = client.verify.v2.services(created.sid).update_with_http_info(
        friendly_name="After", psd2_enabled=True, code_length=9
    )
    assert response.status_code == 200
    updated = response.data
    assert updated.sid == created.sid
    assert updated.friendly_name == "After"
    assert updated.psd2_enabled is True
    assert updated.code_length == 9
    # untouched settings keep their values
    assert updated.lookup_enabled is True
    assert updated.totp["issuer"] == "Keep Me"
    assert updated.date_created == created.date_created
    assert assert_datetime(updated.date_updated) >= created.date_created
    # the account clock moved 5 s between create and update
    assert updated.date_updated >= created.date_created + timedelta(seconds=5)

    fetched = client.verify.v2.services(created.sid).fetch()
    assert (fetched.friendly_name, fetched.psd2_enabled, fetched.code_length) == ("After", True, 9)
    assert fetched.lookup_enabled is True


def test_list_auto_pages_through_every_service_exactly_once(client):
    created = {client.verify.v2.services.create(friendly_name=f"Service {i}").sid for i in range(120)}
    assert len(created) == 120

    listed = client.verify.v2.services.list(page_size=50)
    sids = [s.sid for s in listed]
    assert len(sids) == 120
    assert set(sids) == created


def test_list_pages_carry_fifty_records_and_a_next_page_url(client, base_url):
    for i in range(120):
        client.verify.v2.services.create(friendly_name=f"Paged {i}")
    first = client.verify.v2.services.page(page_size=50)
    assert len(list(first)) == 50
    assert first.next_page_url is not None
    assert first.next_page_url.startswith(f"{base_url}/v2/Services")
    second = first.next_page()
    assert len(list(second)) == 50
    third = second.next_page()
    assert len(list(third)) == 20
    assert third.next_page_url is None
    assert third.next_page() is None


def test_stream_stops_at_the_limit(client):
    created = [client.verify.v2.services.create(friendly_name=f"Stream {i}").sid for i in range(10)]
    streamed = [s.sid for s in client.verify.v2.services.stream(limit=7, page_size=3)]
    assert len(streamed) == 7
    assert len(set(streamed)) == 7
    assert set(streamed) <= set(created)


def test_delete_then_fetch_is_404(client):
    svc = client.verify.v2.services.create(friendly_name="Short lived")
    response = client.verify.v2.services(svc.sid).delete_with_http_info()
    assert response.status_code == 204
    assert response.data is True
    with twilio_error(404, 20404):
        client.verify.v2.services(svc.sid).fetch()
    assert svc.sid not in {s.sid for s in client.verify.v2.services.list()}
    with twilio_error(404, 20404):
        client.verify.v2.services(svc.sid).delete()


def test_fetch_of_an_unknown_service_is_404(client):
    with twilio_error(404, 20404):
        client.verify.v2.services("VA" + "0" * 32).fetch()


def test_missing_friendly_name_is_20001(client):
    with twilio_error(400, 20001) as raised:
        client.verify.v2.services.create(friendly_name=values.unset, code_length=6)
    assert "FriendlyName" in raised.exc.msg


def test_code_length_below_four_is_60200(client):
    with twilio_error(400, 60200) as raised:
        client.verify.v2.services.create(friendly_name="Too short", code_length=3)
    assert "CodeLength" in raised.exc.msg


def test_code_length_above_ten_is_60200(client):
    with twilio_error(400, 60200):
        client.verify.v2.services.create(friendly_name="Too long", code_length=11)


def test_code_length_bounds_four_and_ten_are_accepted(client):
    assert client.verify.v2.services.create(friendly_name="Four", code_length=4).code_length == 4
    assert client.verify.v2.services.create(friendly_name="Ten", code_length=10).code_length == 10


def test_invalid_code_length_on_update_is_60200_and_changes_nothing(client):
    svc = client.verify.v2.services.create(friendly_name="Keep", code_length=6)
    with twilio_error(400, 60200):
        client.verify.v2.services(svc.sid).update(code_length=11)
    assert client.verify.v2.services(svc.sid).fetch().code_length == 6


def test_passkeys_settings_are_echoed(client):
    svc = client.verify.v2.services.create(
        friendly_name="Passkeys",
        passkeys_relying_party_id="www.mydomain.com",
        passkeys_relying_party_name="My domain",
        passkeys_relying_party_origins="www.mydomain.com,www.login.mydomain.com",
        passkeys_user_verification="discouraged",
    )
    rp = svc.passkeys["relying_party"]
    assert rp["id"] == "www.mydomain.com"
    assert rp["name"] == "My domain"
    # the spec's example echoes the comma-separated origins as a list
    assert rp["origins"] == ["www.mydomain.com", "www.login.mydomain.com"]
    assert svc.passkeys["user_verification"] == "discouraged"


def test_page_size_above_1000_is_20007(client):
    with twilio_page_error(400, 20007):
        client.verify.v2.services.page(page_size=1001)


def test_bad_page_token_is_21481(client):
    client.verify.v2.services.create(friendly_name="One")
    with twilio_page_error(400, 21481):
        client.verify.v2.services.page(page_token="not-a-token", page_number=1)
