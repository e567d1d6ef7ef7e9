"""The official twilio-python SDK, unchanged, against verilimit's `--tls` listener.

No base URL is set: the SDK calls `https://verify.twilio.com/v2/...` as it would in production.
Inside this test process only, connections to `*.twilio.com:443` are sent to verilimit's HTTPS
listener on 127.0.0.1 (urllib3's connection hook; the URL, the Host header, SNI and the
certificate check keep the Twilio name), and `REQUESTS_CA_BUNDLE` names verilimit's CA, exactly
as an application in a container would be configured. Any other connection is refused, so the
real Twilio is never reached.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import certifi
import pytest
import requests
import urllib3.util.connection
from twilio.rest import Client

from conftest import Server, start_server, stop_server
from helpers import ACCOUNT_A, TOKEN_A

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's server: plain HTTP plus `--tls`, the CA written to a file."""
    tmp = tmp_path_factory.mktemp("verilimit-tls")
    srv = start_server(
        tmp,
        ["--tls", "--tls-listen", "127.0.0.1:0", "--tls-ca-out", str(tmp / "verilimit-ca.pem")],
    )
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def ca_file(server: Server) -> Path:
    return Path(server.stderr_path).parent / "verilimit-ca.pem"


@pytest.fixture
def twilio_dns(server: Server, monkeypatch: pytest.MonkeyPatch) -> list:
    """Sends `*.twilio.com:443` to verilimit's HTTPS port; refuses every other non-loopback host.

    Returns the list of (host, port) the SDK connected to.
    """
    host, port = server.tls_addr.rsplit(":", 1)
    original = urllib3.util.connection.create_connection
    seen: list = []

    def create_connection(address, *args, **kwargs):
        name, wanted = address
        seen.append((name, wanted))
        if name.endswith(".twilio.com") and wanted == 443:
            return original((host, int(port)), *args, **kwargs)
        if name in ("127.0.0.1", "localhost"):
            return original(address, *args, **kwargs)
        raise OSError(f"test: refusing to connect to {name}:{wanted}")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return seen


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch):
    """Sets the CA bundle the SDK's HTTP library trusts, as a container's environment would."""

    def set_bundle(path) -> None:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    return set_bundle


def plain_client() -> Client:
    """The official SDK exactly as an application creates it: no base URL anywhere."""
    client = Client(ACCOUNT_A, TOKEN_A)
    assert client.verify.base_url == "https://verify.twilio.com"
    return client


def test_the_ca_is_served_and_written(server, ca_file):
    served = requests.get(f"{server.base_url}/emulator/v1/ca.pem", timeout=10)
    assert served.status_code == 200
    assert served.text.startswith("-----BEGIN CERTIFICATE-----")
    assert ca_file.read_text() == served.text


def test_the_unchanged_sdk_verifies_a_number_over_tls(twilio_dns, trust, ca_file, control, server):
    trust(ca_file)
    client = plain_client()
    service = client.verify.v2.services.create(friendly_name="TLS", code_length=6)
    assert service.url == f"https://verify.twilio.com/v2/Services/{service.sid}"
    to = f"+1500444{next(_numbers):04d}"
    verification = client.verify.v2.services(service.sid).verifications.create(to=to, channel="sms")
    assert verification.status == "pending"
    assert verification.url.startswith("https://verify.twilio.com/v2/Services/")
    code = control.code_sent_to(to)  # the control plane, over plain HTTP beside TLS
    check = client.verify.v2.services(service.sid).verification_checks.create(to=to, code=code)
    assert check.status == "approved" and check.valid is True
    assert ("verify.twilio.com", 443) in twilio_dns
    assert all(host == "verify.twilio.com" or host == "127.0.0.1" for host, _ in twilio_dns)


def test_paging_stays_on_verilimit(twilio_dns, trust, ca_file):
    trust(ca_file)
    client = plain_client()
    made = {client.verify.v2.services.create(friendly_name=f"page {i}").sid for i in range(3)}
    # page_size=1: the SDK follows next_page_url (https://verify.twilio.com/...) twice.
    listed = [s.sid for s in client.verify.v2.services.stream(page_size=1)]
    assert set(listed) == made and len(listed) == 3
    page = client.verify.v2.services.page(page_size=1)
    assert page.next_page_url.startswith("https://verify.twilio.com/v2/Services?")


def test_region_and_edge_names_are_served(twilio_dns, trust, ca_file):
    trust(ca_file)
    client = plain_client()
    client.region = "ie1"
    client.edge = "dublin"
    service = client.verify.v2.services.create(friendly_name="edge")
    assert service.url == f"https://verify.dublin.ie1.twilio.com/v2/Services/{service.sid}"
    assert ("verify.dublin.ie1.twilio.com", 443) in twilio_dns
    client.region = None
    client.edge = "sydney"  # an edge alone means region us1
    assert client.verify.v2.services(service.sid).fetch().sid == service.sid
    assert ("verify.sydney.us1.twilio.com", 443) in twilio_dns


@pytest.mark.parametrize("bundle", ["system", "unrelated"])
def test_a_wrong_ca_is_refused(twilio_dns, trust, bundle, tmp_path):
    if bundle == "system":
        trust(certifi.where())
    else:
        # A server with a database of its own has a CA of its own.
        other = start_server(
            tmp_path,
            ["--tls", "--tls-listen", "127.0.0.1:0"],
            database_url=f"sqlite://{tmp_path / 'other.sqlite'}",
        )
        try:
            pem = requests.get(f"{other.base_url}/emulator/v1/ca.pem", timeout=10).text
        finally:
            stop_server(other)
        path = tmp_path / "unrelated-ca.pem"
        path.write_text(pem)
        trust(path)
    with pytest.raises(requests.exceptions.SSLError) as info:
        plain_client().verify.v2.services.list(limit=1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_plain_http_keeps_working_beside_tls(base_url):
    client = Client(ACCOUNT_A, TOKEN_A)
    client.verify.base_url = base_url
    service = client.verify.v2.services.create(friendly_name="plain")
    assert service.url == f"{base_url}/v2/Services/{service.sid}"
