-- Verify Passkeys: a passkeys factor's state (a JSON object: relying party, origins, the
-- registration challenge, then the credential id, its P-256 public key and signature counter;
-- NULL for TOTP and push factors), and the challenge a pending registration waits for, by
-- which VerifyFactor (whose body names no factor) finds it.

ALTER TABLE factors ADD COLUMN passkey TEXT;
ALTER TABLE factors ADD COLUMN passkey_challenge TEXT;
CREATE INDEX factors_passkey_challenge ON factors (service_sid, passkey_challenge);

-- A passkeys challenge's WebAuthn assertion challenge (base64url; NULL for other factor
-- types), by which ApproveChallenge (whose body names no challenge) finds it.
ALTER TABLE challenges ADD COLUMN passkey TEXT;
CREATE INDEX challenges_passkey ON challenges (service_sid, passkey);
