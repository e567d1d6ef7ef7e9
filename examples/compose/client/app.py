"""An application container that uses the official Twilio Python SDK exactly as in production.

No base URL, no custom HTTP client: the SDK calls https://verify.twilio.com. In the compose
example that name is a network alias of the verilimit service, and REQUESTS_CA_BUNDLE names the CA
certificate verilimit wrote to the shared volume, so the SDK's requests go to verilimit over TLS.

It verifies a phone number (starts a verification, reads the code verilimit "sent" from its
control plane, checks it), prints `app: PASS ...`, marks itself healthy (/tmp/verified) and then
stays up like an application server until it is stopped. Exits 1 with `app: FAIL ...` otherwise.
"""

import json
import os
import signal
import sys
import time

from twilio.rest import Client

SERVICE_SID = os.environ["VERIFY_SERVICE_SID"]
TO = "+15550109999"


def fail(message: str) -> None:
    print(f"app: FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    client = Client(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"])
    service = client.verify.v2.services(SERVICE_SID)
    verification = service.verifications.create(to=TO, channel="sms")
    print(f"app: started {verification.sid} at {verification.url}", flush=True)
    if not verification.url.startswith("https://verify.twilio.com/"):
        fail(f"the verification's URL is {verification.url}")

    # The code verilimit "sent", from its test control plane (same host, same TLS connection pool).
    outbox = client.request(
        "GET", "https://verify.twilio.com/emulator/v1/Outbox", params={"To": TO}
    )
    if outbox.status_code != 200:
        fail(f"GET /emulator/v1/Outbox answered {outbox.status_code}: {outbox.text}")
    messages = json.loads(outbox.text)["messages"]
    if not messages:
        fail(f"no code in the outbox for {TO}")
    check = service.verification_checks.create(to=TO, code=messages[-1]["code"])
    if check.status != "approved":
        fail(f"the check with the sent code is {check.status}")
    print(f"app: PASS: {TO} verified over TLS as verify.twilio.com ({check.sid} approved)", flush=True)
    open("/tmp/verified", "w").close()


if __name__ == "__main__":
    # As PID 1 the process must handle SIGTERM itself to stop promptly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        main()
    except Exception as e:  # e.g. verilimit unreachable, or a certificate the SDK does not trust
        fail(f"{type(e).__name__}: {e}")
    while True:
        time.sleep(3600)
