"""Fixtures for the twilio-python suite: a real verilimit process per test module.

Each module gets its own server (own SQLite file in a temporary directory). Before every test
the control plane's `POST /emulator/v1/Reset` wipes both test accounts, so every test starts
with no services, no verifications, no counters and a real-time clock.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest
import requests

# The SDK must never be steered towards Twilio's real hosts: these rewrite the host name.
for _var in ("TWILIO_REGION", "TWILIO_EDGE"):
    os.environ.pop(_var, None)
# Loopback traffic must not go through a proxy configured in the environment.
_no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
os.environ["NO_PROXY"] = os.environ["no_proxy"] = _no_proxy

from twilio.rest import Client  # noqa: E402  (after the environment is cleaned)

from helpers import (  # noqa: E402
    ACCOUNT_A,
    ACCOUNT_B,
    API_KEY_SECRET,
    API_KEY_SID,
    TOKEN_A,
    TOKEN_B,
    make_client,
)

STARTUP_TIMEOUT_S = 20.0
LISTENING_RE = re.compile(r"^verilimit listening on (http://127\.0\.0\.1:(\d+))$")
# With --tls, a second line names the HTTPS listener.
TLS_LISTENING_RE = re.compile(r"^verilimit listening on https://(127\.0\.0\.1:\d+)$")


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen
    stderr_path: Path
    # With --tls: the HTTPS listener's `127.0.0.1:PORT`.
    tls_addr: Optional[str] = None

    def stderr_tail(self, limit: int = 8000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as err:  # pragma: no cover - diagnostics only
            return f"<cannot read stderr: {err}>"
        return text[-limit:]


def _server_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        # Only the settings below reach the server; nothing inherited may change its behaviour.
        if not k.startswith("VERILIMIT_") and not k.startswith("TWILIO_")
    }
    env["TWILIO_ACCOUNT_SID"] = ACCOUNT_A
    env["TWILIO_AUTH_TOKEN"] = TOKEN_A
    env["VERILIMIT_ACCOUNTS"] = f"{ACCOUNT_B}:{TOKEN_B}"
    env["VERILIMIT_API_KEYS"] = f"{API_KEY_SID}:{API_KEY_SECRET}:{ACCOUNT_A}"
    return env


def _binary() -> str:
    path = os.environ.get("VERILIMIT_BIN")
    if not path:
        pytest.exit("VERILIMIT_BIN is not set (path to the verilimit server binary)", returncode=2)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.exit(f"VERILIMIT_BIN={path} is not an executable file", returncode=2)
    return path


def _database_url(db_path: Path) -> str:
    """The server's database: its own SQLite file, or with VERILIMIT_SDK_DATABASE_URL (a
    PostgreSQL database for this run) that one, shared by the suite's servers one after another
    (every test resets both accounts first)."""
    return os.environ.get("VERILIMIT_SDK_DATABASE_URL") or f"sqlite://{db_path}"


def start_server(
    tmpdir: Path, extra_args: Sequence[str] = (), database_url: Optional[str] = None
) -> Server:
    """Starts verilimit (on `database_url` if given); with `--tls` in `extra_args`, also waits for
    its HTTPS line."""
    stderr_path = tmpdir / "server.stderr.log"
    db_path = tmpdir / "db.sqlite"
    stderr_file = open(stderr_path, "wb")
    process = subprocess.Popen(
        [_binary(), "--listen", "127.0.0.1:0", "--database-url", database_url or _database_url(db_path), *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env=_server_env(),
        cwd=tmpdir,
    )
    stderr_file.close()  # the child holds its own descriptor

    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        # Keeps draining stdout for the server's whole life so it can never block on a full pipe.
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, name="verilimit-stdout", daemon=True).start()

    server = Server(base_url="", process=process, stderr_path=stderr_path)
    seen = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            line: Optional[str] = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            timed_out = False
        except queue.Empty:
            line, timed_out = None, True
        if timed_out:
            stop_server(server)
            pytest.fail(
                f"verilimit printed no start-up line within {STARTUP_TIMEOUT_S:.0f}s; "
                f"stdout so far: {seen!r}\nstderr:\n{server.stderr_tail()}",
                pytrace=False,
            )
        if line is None:
            code = process.wait(timeout=5)
            pytest.fail(
                f"verilimit exited (status {code}) before printing its start-up line; "
                f"stdout: {seen!r}\nstderr:\n{server.stderr_tail()}",
                pytrace=False,
            )
        seen.append(line)
        match = LISTENING_RE.match(line.strip())
        if match:
            server.base_url = match.group(1)
        tls_match = TLS_LISTENING_RE.match(line.strip())
        if tls_match:
            server.tls_addr = tls_match.group(1)
        if server.base_url and (server.tls_addr or "--tls" not in extra_args):
            return server


def stop_server(server: Server) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL if it is still there after 5 s."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


class ControlPlane:
    """The `/emulator/v1` test control plane, over plain HTTP with Basic auth."""

    def __init__(self, base_url: str, account_sid: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = (account_sid, token)

    def _url(self, path: str) -> str:
        return f"{self.base_url}/emulator/v1/{path}"

    def reset(self, scope: str = "all") -> None:
        resp = self.session.post(self._url("Reset"), data={"Scope": scope}, timeout=10)
        assert resp.status_code == 204, f"Reset answered {resp.status_code}: {resp.text}"

    def clock(self) -> dict:
        resp = self.session.get(self._url("Clock"), timeout=10)
        assert resp.status_code == 200, f"GET Clock answered {resp.status_code}: {resp.text}"
        return resp.json()

    def advance(self, seconds: int) -> dict:
        resp = self.session.post(self._url("Clock"), data={"AdvanceSeconds": str(seconds)}, timeout=10)
        assert resp.status_code == 200, f"POST Clock answered {resp.status_code}: {resp.text}"
        return resp.json()

    def outbox(self, **filters: str) -> list:
        resp = self.session.get(self._url("Outbox"), params=filters, timeout=10)
        assert resp.status_code == 200, f"GET Outbox answered {resp.status_code}: {resp.text}"
        return resp.json()["messages"]

    def code_sent_to(self, to: str) -> str:
        messages = self.outbox(To=to)
        assert messages, f"no code in the outbox for {to}"
        return messages[-1]["code"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("verilimit"))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def base_url(server: Server) -> str:
    return server.base_url


@pytest.fixture(scope="module")
def control(base_url: str) -> ControlPlane:
    return ControlPlane(base_url, ACCOUNT_A, TOKEN_A)


@pytest.fixture(scope="module")
def control_b(base_url: str) -> ControlPlane:
    return ControlPlane(base_url, ACCOUNT_B, TOKEN_B)


@pytest.fixture(autouse=True)
def fresh_state(request: pytest.FixtureRequest, control: ControlPlane, control_b: ControlPlane, server: Server):
    """Every test starts from an empty account A and B with the real-time clock."""
    control.reset()
    control_b.reset()
    yield
    call_report = getattr(request.node, "rep_call", None)
    if call_report is not None and call_report.failed:
        # Surface the server's view of a failure next to the assertion.
        print(f"--- verilimit stderr (tail) ---\n{server.stderr_tail(4000)}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def client(base_url: str) -> Client:
    return make_client(base_url, ACCOUNT_A, TOKEN_A)


@pytest.fixture
def client_b(base_url: str) -> Client:
    return make_client(base_url, ACCOUNT_B, TOKEN_B)


@pytest.fixture
def key_client(base_url: str) -> Client:
    return make_client(base_url, API_KEY_SID, API_KEY_SECRET, ACCOUNT_A)


@pytest.fixture
def service(client: Client):
    """A plain service of account A with a six-digit code."""
    return client.verify.v2.services.create(friendly_name="SDK test service", code_length=6)
