"""One-shot check of the compose example with the official Twilio Python SDK.

The seeded service has one rate limit, `end_user_ip`, with one bucket of Max=3 per 60 s. Three
verifications from the same client IP to distinct numbers are accepted; the fourth must be
refused with HTTP 429 / Twilio error 20429. Exits 0 when it is, non-zero with a message otherwise.
"""

import os
import sys

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

BASE_URL = os.environ["VERILIMIT_URL"]
SERVICE_SID = os.environ["VERIFY_SERVICE_SID"]
CLIENT_IP = "203.0.113.5"


def fail(message: str) -> None:
    print(f"smoke: FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    client = Client(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = BASE_URL
    service = client.verify.v2.services(SERVICE_SID)

    # Start from empty rate-limit counters (keeps the seeded service), so the example can be re-run
    # within the minute or against a kept volume. Test control plane: see the README.
    reset = client.request("POST", f"{BASE_URL}/emulator/v1/Reset", data={"Scope": "counters"})
    if reset.status_code != 204:
        fail(f"POST /emulator/v1/Reset answered {reset.status_code}: {reset.text}")

    name = service.fetch().friendly_name
    print(f"smoke: service {name!r} ({SERVICE_SID}) at {BASE_URL}", flush=True)
    for attempt in range(1, 5):
        to = f"+1555010{attempt:04d}"
        try:
            verification = service.verifications.create(
                to=to, channel="sms", rate_limits={"end_user_ip": CLIENT_IP}
            )
        except TwilioRestException as e:
            if attempt == 4 and (e.status, e.code) == (429, 20429):
                print(f"smoke: start {attempt} to {to}: refused, HTTP 429 / {e.code} ({e.msg})")
                print("smoke: PASS: the end_user_ip bucket (Max=3 per 60 s) refused the 4th start")
                return
            fail(f"start {attempt} to {to}: HTTP {e.status} / code {e.code}: {e.msg}")
        if attempt == 4:
            fail(f"start 4 to {to} was accepted ({verification.sid}); expected HTTP 429 / 20429")
        print(f"smoke: start {attempt} to {to}: {verification.status} ({verification.sid})", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # e.g. verilimit unreachable, or a 401 from wrong credentials
        fail(f"{type(e).__name__}: {e}")
