"""verilimit for tests: a local Twilio Verify v2 server with exact Service Rate Limits.

    import verilimit

    with verilimit.Server() as vl:
        service = vl.client.verify.v2.services.create(friendly_name="My app")
        service.verifications.create(to="+15005550006", channel="sms")
        code = vl.latest_code("+15005550006")

The wheel also installs the ``verilimit`` binary, and a pytest plugin with the ``verilimit``
fixture (see ``verilimit.pytest_plugin``).
"""

from ._server import (
    DEFAULT_IMAGE,
    DEV_ACCOUNT_SID,
    DEV_AUTH_TOKEN,
    ControlPlaneError,
    Server,
    VerilimitError,
    find_binary,
)

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("verilimit")
except PackageNotFoundError:  # pragma: no cover - running from a source checkout
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_IMAGE",
    "DEV_ACCOUNT_SID",
    "DEV_AUTH_TOKEN",
    "ControlPlaneError",
    "Server",
    "VerilimitError",
    "find_binary",
    "__version__",
]
