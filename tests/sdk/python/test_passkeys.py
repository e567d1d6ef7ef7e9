"""Verify Passkeys through twilio-python (`new_factors`, `new_verify_factors`, `new_challenge`,
`approve_challenge`; JSON bodies; `new_challenge` is a context: `new_challenge().create`), with this test as a software authenticator written with the
standard library only (the venv has no `cryptography`): P-256 arithmetic for the public key and
ECDSA signatures, a hand-encoded CBOR attestationObject of format `none`, clientDataJSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

from twilio.rest.verify.v2.service.approve_challenge import ApproveChallengeList
from twilio.rest.verify.v2.service.new_challenge import NewChallengeList
from twilio.rest.verify.v2.service.new_factor import NewFactorList
from twilio.rest.verify.v2.service.new_verify_factor import NewVerifyFactorList

from helpers import assert_sid, twilio_error

IDENTITY = "ff483d1ff591898a9942916050d2ca3f"
RP = "example.com"
ORIGIN = "https://example.com"

# P-256 (FIPS 186-4 D.1.2.3)
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % P == 0:
        return None
    if p == q:
        m = (3 * p[0] * p[0] + A) * pow(2 * p[1], -1, P) % P
    else:
        m = (q[1] - p[1]) * pow(q[0] - p[0], -1, P) % P
    x = (m * m - p[0] - q[0]) % P
    return (x, (m * (p[0] - x) - p[1]) % P)


def _mul(k, p):
    r = None
    while k:
        if k & 1:
            r = _add(r, p)
        p = _add(p, p)
        k >>= 1
    return r


def _der_int(n: int) -> bytes:
    b = n.to_bytes(32, "big").lstrip(b"\0") or b"\0"
    if b[0] & 0x80:
        b = b"\0" + b
    return bytes([2, len(b)]) + b


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cbor_bytes(b: bytes) -> bytes:
    return (bytes([0x40 | len(b)]) if len(b) < 24 else bytes([0x58, len(b)])) + b


def cbor_text(s: str) -> bytes:
    return bytes([0x60 | len(s)]) + s.encode()


class Authenticator:
    def __init__(self):
        self.d = secrets.randbelow(N - 1) + 1
        self.q = _mul(self.d, G)
        self.cred_id = secrets.token_bytes(16)

    def sign(self, msg: bytes) -> bytes:
        z = int.from_bytes(hashlib.sha256(msg).digest(), "big")
        while True:
            k = secrets.randbelow(N - 1) + 1
            r = _mul(k, G)[0] % N
            s = pow(k, -1, N) * (z + r * self.d) % N
            if r and s:
                body = _der_int(r) + _der_int(s)
                return bytes([0x30, len(body)]) + body

    @staticmethod
    def client_data(kind: str, challenge: str, origin: str) -> str:
        return b64(json.dumps({"type": kind, "challenge": challenge, "origin": origin}).encode())

    def register(self, challenge: str, origin: str = ORIGIN) -> dict:
        ad = hashlib.sha256(RP.encode()).digest() + bytes([0x41]) + (0).to_bytes(4, "big")
        ad += bytes(16) + len(self.cred_id).to_bytes(2, "big") + self.cred_id
        ad += bytes([0xA5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21])
        ad += cbor_bytes(self.q[0].to_bytes(32, "big")) + b"\x22" + cbor_bytes(self.q[1].to_bytes(32, "big"))
        att = b"\xa3" + cbor_text("fmt") + cbor_text("none") + cbor_text("attStmt") + b"\xa0"
        att += cbor_text("authData") + cbor_bytes(ad)
        return {
            "id": b64(self.cred_id),
            "rawId": b64(self.cred_id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "clientDataJSON": self.client_data("webauthn.create", challenge, origin),
                "attestationObject": b64(att),
                "transports": ["internal"],
            },
        }

    def assertion(self, challenge: str, count: int, origin: str = ORIGIN) -> dict:
        cd = self.client_data("webauthn.get", challenge, origin)
        ad = hashlib.sha256(RP.encode()).digest() + bytes([0x05]) + count.to_bytes(4, "big")
        cd_raw = base64.urlsafe_b64decode(cd + "=" * (-len(cd) % 4))
        sig = self.sign(ad + hashlib.sha256(cd_raw).digest())
        return {
            "id": b64(self.cred_id),
            "rawId": b64(self.cred_id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "clientDataJSON": cd,
                "authenticatorData": b64(ad),
                "signature": b64(sig),
                "userHandle": None,
            },
        }


def test_a_passkey_registers_and_approves_a_challenge_through_the_sdk(service):
    auth = Authenticator()
    factor = service.new_factors.create(
        NewFactorList.CreateNewPasskeysFactorRequest(
            {
                "friendly_name": "Laptop",
                "identity": IDENTITY,
                "config": {
                    "relying_party": {"id": RP, "name": "Example", "origins": [ORIGIN]},
                    "authenticator_attachment": "platform",
                    "discoverable_credentials": "preferred",
                    "user_verification": "preferred",
                },
            }
        )
    )
    assert_sid(factor.sid, "YF")
    assert factor.factor_type == "passkeys"
    assert factor.status == "unverified"
    public_key = factor.options["publicKey"]
    assert public_key["rp"] == {"id": RP, "name": "Example"}
    assert public_key["pubKeyCredParams"] == [{"type": "public-key", "alg": -7}]

    verify = NewVerifyFactorList.VerifyPasskeysFactorRequest
    with twilio_error(400, 60200):
        service.new_verify_factors.update(verify(auth.register(public_key["challenge"], "https://evil.example")))
    verified = service.new_verify_factors.update(verify(auth.register(public_key["challenge"])))
    assert verified.sid == factor.sid
    assert verified.status == "verified"

    challenge = service.new_challenge().create(NewChallengeList.CreatePasskeysChallengeRequest({"identity": IDENTITY}))
    assert_sid(challenge.sid, "YC")
    assert challenge.status == "pending"
    request = challenge.options["publicKey"]
    assert request["rpId"] == RP
    assert request["allowCredentials"][0]["id"] == b64(auth.cred_id)

    approve = ApproveChallengeList.ApprovePasskeysChallengeRequest
    other = Authenticator()
    other.cred_id = auth.cred_id
    with twilio_error(400, 60200):
        service.approve_challenge.update(approve(other.assertion(request["challenge"], 1)))
    approved = service.approve_challenge.update(approve(auth.assertion(request["challenge"], 1)))
    assert approved.sid == challenge.sid
    assert approved.status == "approved"
    assert service.entities(IDENTITY).factors(factor.sid).fetch().factor_type == "passkeys"
