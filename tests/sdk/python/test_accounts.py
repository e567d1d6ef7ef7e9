"""Authentication and account isolation through twilio-python."""

from __future__ import annotations

from helpers import ACCOUNT_A, ACCOUNT_B, API_KEY_SID, TOKEN_A, make_client, twilio_error, twilio_page_error


def test_each_account_sees_only_its_own_services(client, client_b):
    svc_a = client.verify.v2.services.create(friendly_name="Service of A")
    svc_b = client_b.verify.v2.services.create(friendly_name="Service of B")
    assert svc_a.account_sid == ACCOUNT_A
    assert svc_b.account_sid == ACCOUNT_B
    assert [s.sid for s in client.verify.v2.services.list()] == [svc_a.sid]
    assert [s.sid for s in client_b.verify.v2.services.list()] == [svc_b.sid]


def test_fetch_of_another_accounts_service_is_404(client, client_b):
    svc = client.verify.v2.services.create(friendly_name="Private")
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).fetch()


def test_another_account_cannot_update_or_delete_a_service(client, client_b):
    svc = client.verify.v2.services.create(friendly_name="Private")
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).update(friendly_name="Hijacked")
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).delete()
    fetched = client.verify.v2.services(svc.sid).fetch()
    assert fetched.friendly_name == "Private"


def test_another_account_cannot_reach_rate_limits_or_start_verifications(client, client_b):
    svc = client.verify.v2.services.create(friendly_name="Private")
    rl = svc.rate_limits.create(unique_name="end_user_ip")
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).rate_limits(rl.sid).fetch()
    with twilio_page_error(404, 20404):
        client_b.verify.v2.services(svc.sid).rate_limits.list()
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).rate_limits(rl.sid).buckets.create(max=1, interval=60)
    with twilio_error(404, 20404):
        client_b.verify.v2.services(svc.sid).verifications.create(to="+15005550199", channel="sms")
    assert rl.buckets.list() == []


def test_bad_token_is_401_20003(client, base_url):
    svc = client.verify.v2.services.create(friendly_name="Mine")
    bad = make_client(base_url, ACCOUNT_A, "not-the-token")
    with twilio_error(401, 20003):
        bad.verify.v2.services(svc.sid).fetch()
    with twilio_error(401, 20003):
        bad.verify.v2.services.create(friendly_name="Nope")
    with twilio_page_error(401, 20003):
        bad.verify.v2.services.list()


def test_unknown_account_is_401_20003(base_url):
    stranger = make_client(base_url, "AC" + "9" * 32, TOKEN_A)
    with twilio_error(401, 20003):
        stranger.verify.v2.services.create(friendly_name="Nope")


def test_bad_api_key_secret_is_401_20003(base_url):
    bad = make_client(base_url, API_KEY_SID, "wrong-secret", ACCOUNT_A)
    with twilio_error(401, 20003):
        bad.verify.v2.services.create(friendly_name="Nope")
    with twilio_page_error(401, 20003):
        bad.verify.v2.services.list()


def test_a_failed_login_creates_nothing(client, base_url):
    bad = make_client(base_url, ACCOUNT_A, "not-the-token")
    with twilio_error(401, 20003):
        bad.verify.v2.services.create(friendly_name="Nope")
    assert client.verify.v2.services.list() == []


def test_api_key_client_sees_account_a_resources(client, key_client, client_b):
    svc = client.verify.v2.services.create(friendly_name="Shared via key")
    rl = svc.rate_limits.create(unique_name="end_user_ip")
    client_b.verify.v2.services.create(friendly_name="Not visible")

    fetched = key_client.verify.v2.services(svc.sid).fetch()
    assert fetched.sid == svc.sid
    assert fetched.account_sid == ACCOUNT_A
    assert [s.sid for s in key_client.verify.v2.services.list()] == [svc.sid]
    assert key_client.verify.v2.services(svc.sid).rate_limits(rl.sid).fetch().unique_name == "end_user_ip"


def test_api_key_client_creates_in_account_a(client, key_client):
    created = key_client.verify.v2.services.create(friendly_name="Made with a key")
    assert created.account_sid == ACCOUNT_A
    assert client.verify.v2.services(created.sid).fetch().friendly_name == "Made with a key"
