"""A verilimit server for tests: started from the binary, from the Docker image, or reused.

Only the standard library is needed; ``twilio`` is imported when ``.client`` is first used.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

#: The development account that ``cargo run`` / a bare ``verilimit`` serves on loopback.
DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_AUTH_TOKEN = "verilimit-dev-token"

#: The image the README's "Run with Docker" builds.
DEFAULT_IMAGE = "verilimit:local"

_LISTENING = re.compile(r"^verilimit listening on http://(\S+):(\d+)\s*$")
_CONTAINER_PORT = 8765  # the image listens on 0.0.0.0:8765 (VERILIMIT_LISTEN)
_KEEP_LOG_CHARS = 64 * 1024
_REQUEST_TIMEOUT_S = 30.0

# Servers still running when the interpreter exits are killed, so none is ever left behind.
_running: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # pragma: no cover - exercised only by abnormal exits
    for server in list(_running):
        server.stop()


class VerilimitError(Exception):
    """The server could not be started, found or stopped."""


class ControlPlaneError(VerilimitError):
    """A control-plane or health request did not answer as expected."""

    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path} answered {status}: {body[:2000]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


def find_binary(bin: Optional[str] = None) -> str:
    """The verilimit executable: ``bin``, else ``$VERILIMIT_BIN``, else the one this package's
    wheel installed next to the interpreter, else ``verilimit`` on ``PATH``."""
    candidates = []
    if bin:
        candidates.append(("the bin argument", bin))
    elif os.environ.get("VERILIMIT_BIN"):
        candidates.append(("VERILIMIT_BIN", os.environ["VERILIMIT_BIN"]))
    else:
        exe = "verilimit.exe" if os.name == "nt" else "verilimit"
        scripts = sysconfig.get_path("scripts")
        if scripts:
            candidates.append(("the wheel's scripts directory", os.path.join(scripts, exe)))
        user_scripts = sysconfig.get_path("scripts", f"{os.name}_user")
        if user_scripts:
            candidates.append(("the user scripts directory", os.path.join(user_scripts, exe)))
        on_path = shutil.which("verilimit")
        if on_path:
            candidates.append(("PATH", on_path))
    for _, path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    if bin or os.environ.get("VERILIMIT_BIN"):
        where, path = candidates[0]
        raise VerilimitError(f"{where} names {path!r}, which is not an executable file")
    raise VerilimitError(
        "no verilimit binary found: install the verilimit wheel into this environment, put "
        "verilimit on PATH, set VERILIMIT_BIN, pass bin=..., or use docker=True / url=..."
    )


class Server:
    """One verilimit server for tests.

    Exactly one way to get it:

    - default: start the ``verilimit`` binary (see :func:`find_binary`) on a free loopback port
      with a SQLite database in a temporary directory, removed on :meth:`stop`;
    - ``docker=True``: ``docker run --rm`` the image (default ``verilimit:local``), published on
      a free loopback port; the database lives in the container's anonymous volume;
    - ``url="http://127.0.0.1:8765"``: use a server that is already running (never stopped here).

    ``account_sid``/``auth_token`` are the account the helper (and :attr:`client`) use; a server
    started here serves exactly that account. They default to the development account.

    Use it as a context manager (``with Server() as vl:``) or call :meth:`start`/:meth:`stop`.
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        bin: Optional[str] = None,
        docker: bool = False,
        image: str = DEFAULT_IMAGE,
        docker_command: Optional[str] = None,
        account_sid: str = DEV_ACCOUNT_SID,
        auth_token: str = DEV_AUTH_TOKEN,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        startup_timeout: Optional[float] = None,
    ):
        if url and (docker or bin):
            raise ValueError("url= reuses a running server; it cannot be combined with bin= or docker=")
        if docker and bin:
            raise ValueError("docker=True runs the image; it cannot be combined with bin=")
        self._reuse_url = url.rstrip("/") if url else None
        self._bin = bin
        self._docker = docker
        self._image = image
        self._docker_command = docker_command or os.environ.get("VERILIMIT_DOCKER") or "docker"
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._args = list(args)
        self._env = dict(env or {})
        if startup_timeout is None:
            startup_timeout = 120.0 if docker else 30.0
        self._startup_timeout = startup_timeout
        self._url: Optional[str] = None
        self._process: Optional[subprocess.Popen] = None
        self._container: Optional[str] = None
        self._tmpdir: Optional[str] = None
        self._log_path: Optional[Path] = None
        self._client: Any = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxy loopback
        auth = f"{account_sid}:{auth_token}".encode()
        self._auth_header = "Basic " + base64.b64encode(auth).decode("ascii")

    # --- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:41235`` (no trailing slash)."""
        if self._url is None:
            raise VerilimitError("the server is not started (use `with Server() as vl:` or .start())")
        return self._url

    @property
    def mode(self) -> str:
        """``"binary"``, ``"docker"`` or ``"url"``."""
        return "url" if self._reuse_url else "docker" if self._docker else "binary"

    def start(self) -> "Server":
        """Starts (or, with ``url=``, checks) the server; returns ``self``. Idempotent."""
        if self._url is not None:
            return self
        if not self._reuse_url:
            self._tmpdir = tempfile.mkdtemp(prefix="verilimit-")
            self._log_path = Path(self._tmpdir) / "server.log"
            _running.add(self)
        try:
            if self._reuse_url:
                self._url = self._reuse_url
                self._wait_healthy()
            elif self._docker:
                self._start_docker()
            else:
                self._start_binary()
            # Fail early, with a clear message, when the credentials are not the server's.
            try:
                self.clock()
            except ControlPlaneError as err:
                raise VerilimitError(
                    f"verilimit at {self._url} refused the control plane to {self.account_sid}: {err} "
                    "(wrong account SID/auth token, or started with --control-plane false?)"
                ) from err
        except BaseException:
            self.stop()
            self._url = None
            raise
        return self

    def _docker_quietly(self, *args):
        """Runs a docker command for clean-up: bounded, silent, its failure ignored."""
        try:
            subprocess.run(
                [self._docker_command, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass

    def stop(self) -> None:
        """Stops a server started here (SIGTERM, then SIGKILL after 10 s) and removes its
        temporary files. A reused server (``url=``) is left running. Idempotent."""
        process, self._process = self._process, None
        container, self._container = self._container, None
        try:
            if container:
                self._docker_quietly("stop", "--time", "5", container)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if container:
                # Normally gone already (`docker run --rm`); this covers a killed `docker run`.
                self._docker_quietly("rm", "--force", container)
        finally:
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            _running.discard(self)
            if self._reuse_url is None:
                self._url = None
            self._client = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        """The tail of the server's log output (stderr; empty for a reused server)."""
        path = self._log_path
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _KEEP_LOG_CHARS))
            return f.read().decode("utf-8", errors="replace")

    def _server_env(self) -> Dict[str, str]:
        # Only what is set here reaches the server: a TWILIO_* or VERILIMIT_* variable of the
        # caller's environment must not change what the tests get (VERILIMIT_LOG excepted).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TWILIO_") and (not k.startswith("VERILIMIT_") or k == "VERILIMIT_LOG")
        }
        env["TWILIO_ACCOUNT_SID"] = self.account_sid
        env["TWILIO_AUTH_TOKEN"] = self.auth_token
        env.update(self._env)
        return env

    def _start_binary(self) -> None:
        assert self._tmpdir is not None and self._log_path is not None
        binary = find_binary(self._bin)
        db = Path(self._tmpdir) / "verilimit.db"
        argv = [binary, "--listen", "127.0.0.1:0", "--database-url", f"sqlite://{db}", *self._args]
        self._process = self._spawn(argv, self._server_env())
        host, port = self._await_listening(binary)
        self._url = f"http://{host}:{port}"

    def _start_docker(self) -> None:
        name = f"verilimit-test-{os.getpid()}-{secrets.token_hex(4)}"
        env = self._server_env()
        argv = [self._docker_command, "run", "--rm", "--name", name, "-p", f"127.0.0.1::{_CONTAINER_PORT}"]
        # Values travel in docker's environment, not on its command line.
        for key in ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", *self._env]:
            argv += ["-e", key]
        argv += [self._image, *self._args]
        self._container = name
        self._process = self._spawn(argv, env)
        self._await_listening(f"{self._docker_command} run ... {self._image}")
        port = self._docker_host_port(name)
        self._url = f"http://127.0.0.1:{port}"

    def _docker_host_port(self, name: str) -> int:
        try:
            out = subprocess.run(
                [self._docker_command, "port", name, f"{_CONTAINER_PORT}/tcp"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise VerilimitError(f"`{self._docker_command} port {name}` failed: {err}") from err
        for line in out.stdout.splitlines():
            match = re.search(r":(\d+)\s*$", line.strip())
            if match:
                return int(match.group(1))
        raise VerilimitError(
            f"`{self._docker_command} port {name} {_CONTAINER_PORT}/tcp` printed no port "
            f"(status {out.returncode}): {out.stdout!r} {out.stderr!r}"
        )

    def _spawn(self, argv: List[str], env: Dict[str, str]) -> subprocess.Popen:
        assert self._log_path is not None and self._tmpdir is not None
        with open(self._log_path, "wb") as log:
            try:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    cwd=self._tmpdir,
                    # Same process group as the tests: a Ctrl-C, or `timeout` ending the test
                    # run, reaches the server too.
                )
            except OSError as err:
                raise VerilimitError(f"could not run {argv[0]!r}: {err}") from err

    def _await_listening(self, what: str) -> "tuple[str, int]":
        """Waits for the start-up line on stdout (never a sleep), at most startup_timeout."""
        process = self._process
        assert process is not None and process.stdout is not None
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            # Drains stdout for the server's whole life, so it can never block on a full pipe.
            for raw in process.stdout:  # type: ignore[union-attr]
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=pump, name="verilimit-stdout", daemon=True).start()
        seen: List[str] = []
        deadline = time.monotonic() + self._startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise VerilimitError(
                    f"{what}: no start-up line within {self._startup_timeout:.0f} s; "
                    f"stdout: {seen!r}\nlog:\n{self.logs()[-4000:]}"
                ) from None
            if line is None:
                try:
                    status = process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    status = None
                raise VerilimitError(
                    f"{what}: exited (status {status}) before listening; "
                    f"stdout: {seen!r}\nlog:\n{self.logs()[-4000:]}"
                )
            if len(seen) < 100:
                seen.append(line)
            match = _LISTENING.match(line)
            if match:
                return match.group(1), int(match.group(2))

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            try:
                status, body = self._request("GET", "/healthz", auth=False)
                if status == 200:
                    return
                problem = f"answered {status}: {body[:200]}"
            except OSError as err:
                problem = str(err)
            if time.monotonic() >= deadline:
                raise VerilimitError(f"no verilimit at {self._reuse_url}: GET /healthz {problem}")
            time.sleep(0.2)  # polling a server started elsewhere; bounded by the deadline

    # --- HTTP -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        form: Optional[Mapping[str, str]] = None,
        auth: bool = True,
    ) -> "tuple[int, str]":
        url = path if path.startswith("http") else self.url + path
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        if auth:
            req.add_header("Authorization", self._auth_header)
        try:
            with self._opener.open(req, timeout=_REQUEST_TIMEOUT_S) as resp:
                return resp.status, resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", errors="replace")

    def _control(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        status, body = self._request(method, path, **kw)
        if status != expect:
            raise ControlPlaneError(method, path, status, body)
        return json.loads(body) if body else None

    # --- the helpers ------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """An official ``twilio.rest.Client`` for this account whose Verify domain points here
        (other Twilio domains are untouched: only Verify is emulated)."""
        if self._client is None:
            try:
                from twilio.http.http_client import TwilioHttpClient
                from twilio.rest import Client
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise VerilimitError(
                    "Server.client needs the official SDK: pip install twilio"
                ) from err
            http = TwilioHttpClient(timeout=_REQUEST_TIMEOUT_S)
            if http.session is not None:
                http.session.trust_env = False  # no proxy from the environment for loopback
            client = Client(self.account_sid, self.auth_token, http_client=http)
            # TWILIO_REGION / TWILIO_EDGE would rewrite the host name (127.0.0.1 -> 127.us1.0.1).
            client.region = None
            client.edge = None
            client.verify.base_url = self.url
            self._client = client
        return self._client

    def reset(self, scope: str = "all") -> None:
        """``POST /emulator/v1/Reset``: forgets this account's services, rate limits, buckets,
        verifications, outbox and counters and puts its clock back to real time
        (``scope="counters"`` clears only the rate-limit counters)."""
        self._control("POST", "/emulator/v1/Reset", 204, form={"Scope": scope})

    def outbox(
        self,
        to: Optional[str] = None,
        *,
        service_sid: Optional[str] = None,
        verification_sid: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """The codes "sent" (``GET /emulator/v1/Outbox``, every page), oldest first: dicts with
        ``sid``, ``to``, ``channel``, ``code``, ``verification_sid``, ``service_sid``,
        ``account_sid``, ``date_created``."""
        query = {"PageSize": "1000"}
        for key, value in (("To", to), ("ServiceSid", service_sid), ("VerificationSid", verification_sid)):
            if value is not None:
                query[key] = value
        messages: List[Dict[str, Any]] = []
        page = self._control("GET", "/emulator/v1/Outbox", 200, query=query)
        while True:
            messages.extend(page["messages"])
            next_url = page.get("meta", {}).get("next_page_url")
            if not next_url:
                return messages
            # Follow the link's path and query on our own base URL (a reused server behind a
            # proxy may build its links from another host name).
            parts = urllib.parse.urlsplit(next_url)
            page = self._control("GET", parts.path + ("?" + parts.query if parts.query else ""), 200)

    def latest_code(self, to: str) -> str:
        """The code most recently "sent" to ``to``; LookupError when none was."""
        messages = self.outbox(to)
        if not messages:
            raise LookupError(f"verilimit sent no code to {to}")
        return messages[-1]["code"]

    def clock(self) -> Dict[str, Any]:
        """``GET /emulator/v1/Clock``: ``{"now": ..., "now_ms": ..., "offset_ms": ...}``."""
        return self._control("GET", "/emulator/v1/Clock", 200)

    def advance_clock(self, seconds: int) -> Dict[str, Any]:
        """``POST /emulator/v1/Clock AdvanceSeconds=seconds``: moves this account's clock forward
        (code expiry, rate-limit windows, Retry-After all follow it); returns the new clock."""
        if isinstance(seconds, bool) or int(seconds) != seconds or seconds < 0:
            raise ValueError(f"seconds must be a whole number >= 0, not {seconds!r}")
        return self._control("POST", "/emulator/v1/Clock", 200, form={"AdvanceSeconds": str(int(seconds))})

    def usage(
        self,
        service_sid: str,
        *,
        rate_limit: Optional[str] = None,
        value: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """``GET /emulator/v1/Services/{sid}/Usage``: one dict per bucket and value in use, with
        ``rate_limit_sid``, ``unique_name``, ``bucket_sid``, ``max``, ``interval``, ``value``,
        ``count``, ``remaining``, ``next_slot_at``, ``retry_after``. ``rate_limit`` (SID or unique
        name) and ``value`` narrow it down."""
        query = {}
        if rate_limit is not None:
            query["RateLimit"] = rate_limit
        if value is not None:
            query["Value"] = value
        path = "/emulator/v1/Services/" + urllib.parse.quote(service_sid, safe="") + "/Usage"
        return self._control("GET", path, 200, query=query)["usage"]

    def __repr__(self) -> str:
        return f"<verilimit.Server {self.mode} {self._url or 'not started'}>"

