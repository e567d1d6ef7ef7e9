"""Verify TOTP through twilio-python: Entities, Factors and Challenges.

Codes are computed with pyotp from the secret verilimit returns, at the account's clock. Each
test first moves that clock to 5 s past a whole minute (a day ahead), so every code's time step
is known in advance whatever the real time.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pyotp
import pytest

from helpers import ACCOUNT_A, assert_datetime, assert_sid, twilio_error, wrong_code

IDENTITY = "ff483d1ff591898a9942916050d2ca3f"


def aligned_clock(control) -> int:
    """Moves the account's clock to 5 s past a minute, about a day ahead; returns that time."""
    now = datetime.strptime(control.clock()["now"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    target = (int(now.timestamp()) + 86_400) // 60 * 60 + 65
    stamp = datetime.fromtimestamp(target, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    resp = control.session.post(control._url("Clock"), data={"Now": stamp}, timeout=10)
    assert resp.status_code == 200, resp.text
    return target


def code(secret: str, at: int, digits: int = 6, interval: int = 30, digest=hashlib.sha1) -> str:
    return pyotp.TOTP(secret, digits=digits, interval=interval, digest=digest).at(at)


@pytest.fixture
def entity(service):
    return service.entities(IDENTITY)


def enrol_verified(entity, t):
    factor = entity.new_factors.create(friendly_name="My Phone", factor_type="totp")
    secret = factor.binding["secret"]
    verified = entity.factors(factor.sid).update(auth_payload=code(secret, t))
    assert verified.status == "verified"
    return factor, secret


def test_a_totp_factor_is_enrolled_verified_and_approves_a_challenge(service, entity, control, base_url):
    t = aligned_clock(control)
    response = entity.new_factors.create_with_http_info(friendly_name="My Phone", factor_type="totp")
    assert response.status_code == 201
    factor = response.data
    assert_sid(factor.sid, "YF")
    assert_sid(factor.entity_sid, "YE")
    assert factor.account_sid == ACCOUNT_A
    assert factor.identity == IDENTITY
    assert factor.status == "unverified"
    assert factor.factor_type == "totp"
    assert factor.config == {"alg": "sha1", "skew": 1, "code_length": 6, "time_step": 30}
    assert_datetime(factor.date_created)
    secret = factor.binding["secret"]
    parsed = pyotp.parse_uri(factor.binding["uri"])
    assert (parsed.secret, parsed.issuer, parsed.name, parsed.digits, parsed.interval) == (
        secret,
        "SDK test service",
        "My Phone",
        6,
        30,
    )
    assert factor.url == f"{base_url}/v2/Services/{service.sid}/Entities/{IDENTITY}/Factors/{factor.sid}"

    # The entity was created with the factor.
    fetched_entity = entity.fetch()
    assert fetched_entity.sid == factor.entity_sid
    assert fetched_entity.identity == IDENTITY

    # A wrong code leaves the factor unverified; the right one verifies it.
    right = code(secret, t)
    assert entity.factors(factor.sid).update(auth_payload=wrong_code(right)).status == "unverified"
    assert entity.factors(factor.sid).update(auth_payload=right).status == "verified"
    assert entity.factors(factor.sid).fetch().status == "verified"

    # The next time step's code approves a challenge at once.
    control.advance(30)
    created = entity.challenges.create_with_http_info(factor_sid=factor.sid, auth_payload=code(secret, t + 30))
    assert created.status_code == 201
    challenge = created.data
    assert_sid(challenge.sid, "YC")
    assert challenge.status == "approved"
    assert challenge.factor_sid == factor.sid
    assert challenge.factor_type == "totp"
    assert_datetime(challenge.date_responded)
    assert entity.challenges(challenge.sid).fetch().status == "approved"


def test_a_code_is_accepted_once_and_only_at_the_accounts_clock(service, entity, control):
    real = int(datetime.now(timezone.utc).timestamp())
    t = aligned_clock(control)
    factor, secret = enrol_verified(entity, t)
    # The code that verified the factor is used up.
    assert entity.challenges.create(factor_sid=factor.sid, auth_payload=code(secret, t)).status == "pending"
    # The code of real time (a day before the account's clock) is refused.
    assert entity.challenges.create(factor_sid=factor.sid, auth_payload=code(secret, real)).status == "pending"
    control.advance(30)
    fresh = code(secret, t + 30)
    # Sent concurrently, one code approves exactly one challenge.
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(
            pool.map(
                lambda _: entity.challenges.create(factor_sid=factor.sid, auth_payload=fresh).status,
                range(6),
            )
        )
    assert sorted(statuses) == ["approved"] + ["pending"] * 5

    # A pending challenge is answered later through update.
    open_challenge = entity.challenges.create(factor_sid=factor.sid)
    assert open_challenge.status == "pending"
    control.advance(30)
    answered = entity.challenges(open_challenge.sid).update(auth_payload=code(secret, t + 60))
    assert answered.status == "approved"


def test_factor_settings_and_lists(client, control):
    svc = client.verify.v2.services.create(
        friendly_name="Settings", totp_issuer="Acme", totp_time_step=60, totp_code_length=8, totp_skew=0
    )
    entity = svc.entities(IDENTITY)
    t = aligned_clock(control)
    from_service = entity.new_factors.create(friendly_name="phone", factor_type="totp")
    assert from_service.config == {"alg": "sha1", "skew": 0, "code_length": 8, "time_step": 60}
    assert pyotp.parse_uri(from_service.binding["uri"]).issuer == "Acme"

    secret = pyotp.random_base32()
    own = entity.new_factors.create(
        friendly_name="tablet",
        factor_type="totp",
        binding_secret=secret,
        config_alg="sha256",
        config_code_length=7,
        config_time_step=20,
        config_skew=1,
    )
    assert own.binding["secret"] == secret
    verified = entity.factors(own.sid).update(auth_payload=code(secret, t, 7, 20, hashlib.sha256))
    assert verified.status == "verified"

    assert [f.sid for f in entity.factors.list()] == [from_service.sid, own.sid]
    assert [f.sid for f in entity.factors.list(page_size=1)] == [from_service.sid, own.sid]
    first = entity.challenges.create(factor_sid=own.sid)
    second = entity.challenges.create(factor_sid=own.sid)
    assert [c.sid for c in entity.challenges.list(order="desc", page_size=1)] == [second.sid, first.sid]
    assert [c.sid for c in entity.challenges.list(status="approved")] == []
    assert [c.sid for c in entity.challenges.list(factor_sid=own.sid, status="pending")] == [first.sid, second.sid]

    svc.entities.create(identity="user-0002")
    assert [e.identity for e in svc.entities.list(page_size=1)] == [IDENTITY, "user-0002"]
    assert svc.entities("user-0002").delete() is True
    assert entity.factors(own.sid).delete() is True
    assert [f.sid for f in entity.factors.list()] == [from_service.sid]


def test_totp_errors(service, entity, control):
    t = aligned_clock(control)
    unverified = entity.new_factors.create(friendly_name="phone", factor_type="totp")
    with twilio_error(403, 60318):
        entity.challenges.create(factor_sid=unverified.sid, auth_payload=code(unverified.binding["secret"], t))
    with twilio_error(400, 60200):
        entity.new_factors.create(friendly_name="phone", factor_type="push")
    with twilio_error(409, 60301):
        service.entities.create(identity=IDENTITY)
    with twilio_error(404, 20404):
        service.entities("user-9999").fetch()
    with twilio_error(404, 20404):
        entity.factors("YF" + "0" * 32).fetch()

    factor, secret = enrol_verified(service.entities("user-0001"), t)
    other = service.entities("user-0001")
    open_challenge = other.challenges.create(factor_sid=factor.sid)
    control.advance(301)
    assert other.challenges(open_challenge.sid).fetch().status == "expired"
    with twilio_error(403, 60323):
        other.challenges(open_challenge.sid).update(auth_payload=code(secret, t + 301))

    # Deleting the entity deletes its factors and challenges.
    assert other.delete() is True
    with twilio_error(404, 20404):
        other.challenges(open_challenge.sid).fetch()
