"""Shared constants and assertions for the twilio-python suite."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Iterator, Optional

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

ACCOUNT_A = "AC0123456789abcdef0123456789abcdef"
TOKEN_A = "token-for-account-a"
ACCOUNT_B = "ACfedcba9876543210fedcba9876543210"
TOKEN_B = "token-for-account-b"
API_KEY_SID = "SK00112233445566778899aabbccddeeff"
API_KEY_SECRET = "api-key-secret-for-a"


def make_client(base_url: str, username: str, password: str, account_sid: Optional[str] = None) -> Client:
    """An official SDK client whose Verify domain points at verilimit."""
    client = Client(username, password, account_sid)
    client.verify.base_url = base_url
    return client


class Raised:
    """Filled in by `twilio_error` once the block has raised."""

    exc: Optional[TwilioRestException] = None


@contextlib.contextmanager
def twilio_error(status: int, code: int) -> Iterator[Raised]:
    """Asserts the block raises TwilioRestException with this HTTP status and Twilio code."""
    raised = Raised()
    with pytest.raises(TwilioRestException) as info:
        yield raised
    exc = info.value
    raised.exc = exc
    assert (exc.status, exc.code) == (status, code), (
        f"expected HTTP {status} / code {code}, got HTTP {exc.status} / code {exc.code}: {exc.msg}"
    )


@contextlib.contextmanager
def twilio_page_error(status: int, code: int) -> Iterator[None]:
    """Like `twilio_error` for list/stream/page calls.

    twilio-python raises a bare TwilioException("Unable to fetch page", response) when a
    page request fails, so the status and code are read from the attached HTTP response.
    """
    with pytest.raises(TwilioException) as info:
        yield
    assert info.value.args[0] == "Unable to fetch page", info.value
    response = info.value.args[1]
    body = response.text
    assert response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {body}"
    assert json.loads(body)["code"] == code, f"expected code {code}: {body}"


def assert_sid(value: Optional[str], prefix: str) -> None:
    assert isinstance(value, str), f"sid {value!r} is not a string"
    assert re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value), f"{value!r} is not a {prefix} sid"


def assert_datetime(value: object) -> datetime:
    # twilio-python parses only YYYY-MM-DDTHH:MM:SSZ; anything else stays a string.
    assert isinstance(value, datetime), f"date {value!r} was not parsed (wrong wire format?)"
    assert value.tzinfo is not None
    return value


def wrong_code(code: str) -> str:
    """A code of the same length that differs from `code` in its last digit."""
    last = "1" if code[-1] != "1" else "2"
    return code[:-1] + last
