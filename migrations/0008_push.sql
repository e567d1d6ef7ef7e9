-- Verify Push: a push factor's binding and configuration (a JSON object: the device's public key,
-- SDK version, app id, notification platform and token; NULL for TOTP factors), and a push
-- challenge's `Details.Fields` (a JSON array of {"label", "value"} objects).

ALTER TABLE factors ADD COLUMN push TEXT;
ALTER TABLE challenges ADD COLUMN fields TEXT;
