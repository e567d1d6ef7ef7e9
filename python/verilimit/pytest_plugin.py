"""pytest plugin (registered through the ``pytest11`` entry point, so installing is enough).

Fixtures:

- ``verilimit``: the session's server, reset (``POST /emulator/v1/Reset``) before the test;
- ``verilimit_server``: the same server without the reset (session scope, for your own
  session-scoped fixtures).

One server per test session (per worker under pytest-xdist). Options choose where it comes from:
the ``verilimit`` binary (default; ``--verilimit-bin`` or ``VERILIMIT_BIN`` to pick one), the
Docker image (``--verilimit-docker``), or a running server (``--verilimit-url``).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from ._server import DEFAULT_IMAGE, DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, Server


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verilimit", "verilimit (local Twilio Verify server)")
    group.addoption(
        "--verilimit-url",
        metavar="URL",
        default=None,
        help="use the verilimit server already running at URL instead of starting one "
        "(its state is reset before each test)",
    )
    group.addoption(
        "--verilimit-bin",
        metavar="PATH",
        default=None,
        help="the verilimit binary to start (default: $VERILIMIT_BIN, else the one installed "
        "with this package, else verilimit on PATH)",
    )
    group.addoption(
        "--verilimit-docker",
        action="store_true",
        default=False,
        help="run the Docker image instead of the binary (docker run --rm, on a free loopback "
        "port; $VERILIMIT_DOCKER names another docker-compatible command, e.g. podman)",
    )
    group.addoption(
        "--verilimit-image",
        metavar="IMAGE",
        default=DEFAULT_IMAGE,
        help=f"the image for --verilimit-docker (default {DEFAULT_IMAGE})",
    )
    group.addoption(
        "--verilimit-account-sid",
        metavar="ACSID",
        default=DEV_ACCOUNT_SID,
        help="the account the fixture and its client use (default: the development account)",
    )
    group.addoption(
        "--verilimit-auth-token",
        metavar="TOKEN",
        default=DEV_AUTH_TOKEN,
        help="that account's auth token",
    )
    group.addoption(
        "--verilimit-arg",
        metavar="ARG",
        action="append",
        default=[],
        help="an extra argument for a server started here (repeat it), e.g. --verilimit-arg=--code-ttl=300",
    )


def pytest_configure(config: pytest.Config) -> None:
    opt = config.getoption
    if opt("--verilimit-url") and (opt("--verilimit-docker") or opt("--verilimit-bin") or opt("--verilimit-arg")):
        raise pytest.UsageError(
            "--verilimit-url reuses a running server: leave out --verilimit-docker, "
            "--verilimit-bin and --verilimit-arg"
        )
    if opt("--verilimit-docker") and opt("--verilimit-bin"):
        raise pytest.UsageError("--verilimit-docker and --verilimit-bin exclude each other")


@pytest.fixture(scope="session")
def verilimit_server(pytestconfig: pytest.Config) -> Iterator[Server]:
    """The session's verilimit server (started once, stopped at the end of the session)."""
    opt = pytestconfig.getoption
    server = Server(
        url=opt("--verilimit-url"),
        bin=opt("--verilimit-bin"),
        docker=opt("--verilimit-docker"),
        image=opt("--verilimit-image"),
        account_sid=opt("--verilimit-account-sid"),
        auth_token=opt("--verilimit-auth-token"),
        args=opt("--verilimit-arg"),
    )
    with server:
        yield server


@pytest.fixture
def verilimit(verilimit_server: Server) -> Server:
    """The session's verilimit server, reset before this test: no services, no verifications,
    an empty outbox, no rate-limit counters, and the account's clock back at real time."""
    verilimit_server.reset()
    return verilimit_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "verilimit_server" in getattr(item, "fixturenames", ()):
        server = getattr(item, "funcargs", {}).get("verilimit_server")
        log = server.logs() if isinstance(server, Server) else ""
        if log:
            report.sections.append(("verilimit server log (tail)", log[-4000:]))
