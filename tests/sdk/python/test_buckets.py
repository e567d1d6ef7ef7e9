"""Rate-limit Buckets through twilio-python: create/fetch/update/list/delete and validation."""

from __future__ import annotations

import pytest
from twilio.base import values

from helpers import ACCOUNT_A, assert_datetime, assert_sid, twilio_error


@pytest.fixture
def rate_limit(service):
    return service.rate_limits.create(unique_name="end_user_ip", description="per IP")


def test_create_returns_the_bucket(client, service, rate_limit, base_url):
    response = rate_limit.buckets.create_with_http_info(max=3, interval=60)
    assert response.status_code == 201
    bucket = response.data
    assert_sid(bucket.sid, "BL")
    assert bucket.rate_limit_sid == rate_limit.sid
    assert bucket.service_sid == service.sid
    assert bucket.account_sid == ACCOUNT_A
    assert bucket.max == 3
    assert bucket.interval == 60
    assert assert_datetime(bucket.date_updated) == assert_datetime(bucket.date_created)
    assert bucket.url == (
        f"{base_url}/v2/Services/{service.sid}/RateLimits/{rate_limit.sid}/Buckets/{bucket.sid}"
    )


def test_fetch_returns_the_bucket(client, service, rate_limit):
    created = rate_limit.buckets.create(max=10, interval=3600)
    response = (
        client.verify.v2.services(service.sid)
        .rate_limits(rate_limit.sid)
        .buckets(created.sid)
        .fetch_with_http_info()
    )
    assert response.status_code == 200
    fetched = response.data
    assert fetched.sid == created.sid
    assert (fetched.max, fetched.interval) == (10, 3600)
    assert fetched.rate_limit_sid == rate_limit.sid
    assert fetched.date_created == created.date_created


def test_update_of_max_keeps_the_interval(client, rate_limit, control):
    created = rate_limit.buckets.create(max=3, interval=60)
    control.advance(2)
    response = rate_limit.buckets(created.sid).update_with_http_info(max=7)
    assert response.status_code == 200
    updated = response.data
    assert updated.sid == created.sid
    assert updated.max == 7
    assert updated.interval == 60
    assert assert_datetime(updated.date_updated) > created.date_created
    fetched = rate_limit.buckets(created.sid).fetch()
    assert (fetched.max, fetched.interval) == (7, 60)


def test_update_of_interval_keeps_max(client, rate_limit):
    created = rate_limit.buckets.create(max=3, interval=60)
    updated = rate_limit.buckets(created.sid).update(interval=120)
    assert (updated.max, updated.interval) == (3, 120)


def test_list_returns_every_bucket_of_the_rate_limit(client, service, rate_limit):
    created = {}
    for max_, interval in [(3, 60), (10, 3600), (50, 86400)]:
        b = rate_limit.buckets.create(max=max_, interval=interval)
        created[b.sid] = (max_, interval)
    other = service.rate_limits.create(unique_name="phone_number")
    other.buckets.create(max=1, interval=1)

    listed = rate_limit.buckets.list(page_size=2)  # forces paging
    assert {b.sid: (b.max, b.interval) for b in listed} == created
    assert len(listed) == 3
    assert [(b.max, b.interval) for b in other.buckets.list()] == [(1, 1)]


def test_delete_then_fetch_is_404(client, rate_limit):
    bucket = rate_limit.buckets.create(max=3, interval=60)
    response = rate_limit.buckets(bucket.sid).delete_with_http_info()
    assert response.status_code == 204
    assert response.data is True
    with twilio_error(404, 20404):
        rate_limit.buckets(bucket.sid).fetch()
    assert rate_limit.buckets.list() == []


def test_duplicate_interval_is_60211(client, rate_limit):
    rate_limit.buckets.create(max=3, interval=60)
    with twilio_error(400, 60211):
        rate_limit.buckets.create(max=5, interval=60)
    assert [(b.max, b.interval) for b in rate_limit.buckets.list()] == [(3, 60)]


def test_missing_max_is_20001(client, rate_limit):
    with twilio_error(400, 20001) as raised:
        rate_limit.buckets.create(max=values.unset, interval=60)
    assert "Max" in raised.exc.msg
    assert rate_limit.buckets.list() == []


def test_missing_interval_is_20001(client, rate_limit):
    with twilio_error(400, 20001) as raised:
        rate_limit.buckets.create(max=3, interval=values.unset)
    assert "Interval" in raised.exc.msg


def test_max_below_one_is_60200(client, rate_limit):
    with twilio_error(400, 60200):
        rate_limit.buckets.create(max=0, interval=60)


def test_interval_out_of_range_is_60200(client, rate_limit):
    with twilio_error(400, 60200):
        rate_limit.buckets.create(max=3, interval=0)
    with twilio_error(400, 60200):
        rate_limit.buckets.create(max=3, interval=86401)
    assert rate_limit.buckets.create(max=3, interval=86400).interval == 86400


def test_bucket_of_an_unknown_rate_limit_is_404(client, service):
    with twilio_error(404, 20404):
        service.rate_limits("RK" + "0" * 32).buckets.create(max=3, interval=60)


def test_the_21st_bucket_of_a_rate_limit_is_60210(client, rate_limit):
    for i in range(20):
        rate_limit.buckets.create(max=5, interval=60 + i)
    with twilio_error(400, 60210):
        rate_limit.buckets.create(max=5, interval=1000)
    assert len(rate_limit.buckets.list()) == 20


def test_update_to_an_interval_already_used_is_60211(client, rate_limit):
    rate_limit.buckets.create(max=3, interval=60)
    other = rate_limit.buckets.create(max=10, interval=3600)
    with twilio_error(400, 60211):
        rate_limit.buckets(other.sid).update(interval=60)
    assert rate_limit.buckets(other.sid).fetch().interval == 3600
