"""The key primitives nio lacks, checked against an independent implementation (the
``cryptography`` package) and the spec's encodings: signed JSON, recovery keys and
secret storage (m.secret_storage.v1.aes-hmac-sha2)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from network.matrix.keys import (
    BadKey,
    SigningKey,
    b64decode,
    canonical_json,
    cross_signing_key,
    decode_recovery_key,
    decrypt_secret,
    device_cross_signed,
    device_trust,
    encode_recovery_key,
    encrypt_secret,
    key_description,
    key_matches,
    sign_json,
    signed_by,
)

USER = "@bot:example.org"


def test_canonical_json_sorts_keys_without_spaces_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == (
        '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()
    )


def test_signatures_verify_with_an_independent_ed25519() -> None:
    key = SigningKey.generate()
    other = Ed25519PrivateKey.from_private_bytes(key.seed)
    obj = {"device_id": "D", "keys": {"ed25519:D": "x"}, "unsigned": {"name": "n"}}
    signed = sign_json(obj, USER, f"ed25519:{key.public}", key)
    signature = b64decode(signed["signatures"][USER][f"ed25519:{key.public}"])
    other.public_key().verify(signature, canonical_json({k: obj[k] for k in ("device_id", "keys")}))
    assert signed_by(signed, USER, f"ed25519:{key.public}", key.public)
    tampered = dict(signed, device_id="E")
    assert not signed_by(tampered, USER, f"ed25519:{key.public}", key.public)


def test_a_device_counts_as_cross_signed_only_through_the_whole_chain() -> None:
    master, ssk, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    master_obj = cross_signing_key(USER, "master", master)
    ssk_obj = sign_json(
        cross_signing_key(USER, "self_signing", ssk), USER, f"ed25519:{master.public}", master
    )
    device = {"user_id": USER, "device_id": "D", "keys": {"ed25519:D": "k"}}
    good = sign_json(device, USER, f"ed25519:{ssk.public}", ssk)
    assert device_cross_signed(USER, good, master_obj, ssk_obj)
    assert not device_cross_signed(USER, device, master_obj, ssk_obj)  # unsigned
    forged_ssk = sign_json(
        cross_signing_key(USER, "self_signing", ssk), USER, f"ed25519:{master.public}", stranger
    )
    assert not device_cross_signed(USER, good, master_obj, forged_ssk)  # bad signature
    assert not device_cross_signed("@eve:example.org", good, master_obj, ssk_obj)


def test_trust_tells_an_unsigned_device_from_one_with_a_forged_signature() -> None:
    master, ssk, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    master_obj = cross_signing_key(USER, "master", master)
    ssk_obj = sign_json(
        cross_signing_key(USER, "self_signing", ssk), USER, f"ed25519:{master.public}", master
    )
    device = {"user_id": USER, "device_id": "D", "keys": {"ed25519:D": "k"}}
    good = sign_json(device, USER, f"ed25519:{ssk.public}", ssk)
    assert device_trust(USER, good, master_obj, ssk_obj) == "cross-signed"
    assert device_trust(USER, device, master_obj, ssk_obj) == "unsigned"
    assert device_trust(USER, device, None, None) == "unsigned"  # no identity at all
    # A signature under her self-signing key's id, made by another key.
    forged = sign_json(device, USER, f"ed25519:{ssk.public}", stranger)
    assert device_trust(USER, forged, master_obj, ssk_obj) == "bad-signature"
    # Signed by the self-signing key, but that key is not signed by her master key.
    fake_ssk = sign_json(
        cross_signing_key(USER, "self_signing", ssk), USER, f"ed25519:{master.public}", stranger
    )
    assert device_trust(USER, good, master_obj, fake_ssk) == "bad-signature"


def test_recovery_key_round_trips_and_catches_a_typo() -> None:
    key = bytes(range(32))
    text = encode_recovery_key(key)
    groups = text.split(" ")
    assert all(len(g) == 4 for g in groups[:-1]) and text.startswith("Es")
    assert decode_recovery_key(text) == key
    assert decode_recovery_key(text.replace(" ", "")) == key
    typo = text[:5] + ("b" if text[5] != "b" else "c") + text[6:]
    with pytest.raises(BadKey):
        decode_recovery_key(typo)
    with pytest.raises(BadKey):
        decode_recovery_key("not a key 0OIl")


def test_secret_storage_matches_the_spec_computed_independently() -> None:
    key, name, secret = bytes(range(32)), "m.cross_signing.self_signing", "c2VjcmV0"
    enc = encrypt_secret(key, name, secret, iv=b"\xff" * 16)
    iv = base64.b64decode(enc["iv"])
    assert iv[8] & 0x80 == 0  # bit 63 cleared
    okm = HKDF(algorithm=SHA256(), length=64, salt=b"\0" * 32, info=name.encode()).derive(key)
    aes_key, mac_key = okm[:32], okm[32:]
    ciphertext = base64.b64decode(enc["ciphertext"])
    plain = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor().update(ciphertext)
    assert plain == secret.encode()
    assert base64.b64decode(enc["mac"]) == hmac.new(mac_key, ciphertext, hashlib.sha256).digest()
    assert decrypt_secret(key, name, enc) == secret
    with pytest.raises(BadKey):
        decrypt_secret(bytes(32), name, enc)  # another key: the MAC does not match


def test_key_description_checks_the_recovery_key() -> None:
    key = bytes(range(32))
    description = key_description(key)
    assert description["algorithm"] == "m.secret_storage.v1.aes-hmac-sha2"
    assert key_matches(key, description)
    assert not key_matches(bytes(32), description)
