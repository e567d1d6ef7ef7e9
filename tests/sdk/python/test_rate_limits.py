"""Service Rate Limits through twilio-python: create/fetch/update/list/delete and validation."""

from __future__ import annotations

from twilio.base import values

from helpers import ACCOUNT_A, assert_datetime, assert_sid, twilio_error


def test_create_returns_the_rate_limit(client, service, base_url):
    response = service.rate_limits.create_with_http_info(
        unique_name="end_user_ip", description="Limit by end user IP"
    )
    assert response.status_code == 201
    rl = response.data
    assert_sid(rl.sid, "RK")
    assert rl.service_sid == service.sid
    assert rl.account_sid == ACCOUNT_A
    assert rl.unique_name == "end_user_ip"
    assert rl.description == "Limit by end user IP"
    assert assert_datetime(rl.date_updated) == assert_datetime(rl.date_created)
    assert rl.url == f"{base_url}/v2/Services/{service.sid}/RateLimits/{rl.sid}"
    assert rl.links["buckets"] == f"{base_url}/v2/Services/{service.sid}/RateLimits/{rl.sid}/Buckets"


def test_unique_name_may_use_letters_digits_dot_underscore_and_dash(client, service):
    rl = service.rate_limits.create(unique_name="Phone.Number_v2-x")
    assert rl.unique_name == "Phone.Number_v2-x"
    assert rl.description is None or rl.description == ""


def test_fetch_returns_the_rate_limit(client, service):
    created = service.rate_limits.create(unique_name="session_id", description="per session")
    response = client.verify.v2.services(service.sid).rate_limits(created.sid).fetch_with_http_info()
    assert response.status_code == 200
    fetched = response.data
    assert fetched.sid == created.sid
    assert fetched.service_sid == service.sid
    assert fetched.unique_name == "session_id"
    assert fetched.description == "per session"
    assert fetched.date_created == created.date_created


def test_update_changes_the_description_only(client, service, control):
    created = service.rate_limits.create(unique_name="end_user_ip", description="old text")
    control.advance(3)
    response = service.rate_limits(created.sid).update_with_http_info(description="new text")
    assert response.status_code == 200
    updated = response.data
    assert updated.sid == created.sid
    assert updated.unique_name == "end_user_ip"
    assert updated.description == "new text"
    assert updated.date_created == created.date_created
    assert assert_datetime(updated.date_updated) > created.date_created
    assert service.rate_limits(created.sid).fetch().description == "new text"


def test_list_returns_every_rate_limit_of_the_service(client, service):
    names = {"end_user_ip", "phone_number", "session_id"}
    created = {service.rate_limits.create(unique_name=n).sid: n for n in names}
    other = client.verify.v2.services.create(friendly_name="Other service")
    other.rate_limits.create(unique_name="not_mine")

    listed = service.rate_limits.list(page_size=2)  # forces paging
    assert {rl.sid: rl.unique_name for rl in listed} == created
    assert len(listed) == 3
    assert [rl.unique_name for rl in other.rate_limits.list()] == ["not_mine"]


def test_delete_then_fetch_is_404(client, service):
    rl = service.rate_limits.create(unique_name="end_user_ip")
    response = service.rate_limits(rl.sid).delete_with_http_info()
    assert response.status_code == 204
    assert response.data is True
    with twilio_error(404, 20404):
        service.rate_limits(rl.sid).fetch()
    assert service.rate_limits.list() == []


def test_deleted_unique_name_can_be_reused(client, service):
    first = service.rate_limits.create(unique_name="end_user_ip")
    service.rate_limits(first.sid).delete()
    second = service.rate_limits.create(unique_name="end_user_ip")
    assert second.sid != first.sid
    assert second.unique_name == "end_user_ip"


def test_duplicate_unique_name_is_60208(client, service):
    service.rate_limits.create(unique_name="end_user_ip")
    with twilio_error(400, 60208):
        service.rate_limits.create(unique_name="end_user_ip", description="again")
    assert len(service.rate_limits.list()) == 1


def test_same_unique_name_in_another_service_is_fine(client, service):
    service.rate_limits.create(unique_name="end_user_ip")
    other = client.verify.v2.services.create(friendly_name="Other")
    assert other.rate_limits.create(unique_name="end_user_ip").unique_name == "end_user_ip"


def test_unique_name_with_a_space_is_60209(client, service):
    with twilio_error(400, 60209):
        service.rate_limits.create(unique_name="has space")
    assert service.rate_limits.list() == []


def test_unique_name_with_a_symbol_is_60209(client, service):
    with twilio_error(400, 60209):
        service.rate_limits.create(unique_name="ip@address")


def test_missing_unique_name_is_20001(client, service):
    with twilio_error(400, 20001) as raised:
        service.rate_limits.create(unique_name=values.unset, description="no name")
    assert "UniqueName" in raised.exc.msg


def test_rate_limit_of_an_unknown_service_is_404(client):
    with twilio_error(404, 20404):
        client.verify.v2.services("VA" + "0" * 32).rate_limits.create(unique_name="end_user_ip")


def test_the_101st_rate_limit_of_a_service_is_60207(client, service):
    for i in range(100):
        service.rate_limits.create(unique_name=f"limit_{i}")
    with twilio_error(400, 60207):
        service.rate_limits.create(unique_name="one_too_many")
    assert len(service.rate_limits.list(page_size=1000)) == 100
