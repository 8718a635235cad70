"""Matrix key primitives nio lacks: signed JSON, ed25519 key pairs, recovery keys and
secret storage (SSSS ``m.secret_storage.v1.aes-hmac-sha2``).

Pure functions, no I/O; written against the Matrix spec (appendices "Signing JSON" and
"Unpadded Base64", client-server "Cross-signing", "Secret storage", "Recovery key").
Built on pycryptodome, which matrix-nio already depends on: no new dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

SSSS_ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_RECOVERY_PREFIX = b"\x8b\x01"


class BadKey(ValueError):
    """A key, signature or secret that does not check out."""


# -- encodings -------------------------------------------------------------------


def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    """Padded or unpadded base64 (the spec uses both)."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    """The spec's canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


# -- ed25519 -----------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 private key kept as its 32-byte seed (what secret storage holds)."""

    seed: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_secret(cls, text: str) -> SigningKey:
        seed = b64decode(text.strip())
        if len(seed) != 32:
            raise BadKey("a cross-signing secret must be 32 bytes")
        return cls(seed)

    @property
    def public(self) -> str:
        key = ECC.construct(curve="Ed25519", seed=self.seed)
        return unpadded_b64(key.public_key().export_key(format="raw"))

    def secret(self) -> str:
        return unpadded_b64(self.seed)

    def sign(self, message: bytes) -> str:
        key = ECC.construct(curve="Ed25519", seed=self.seed)
        return unpadded_b64(eddsa.new(key, "rfc8032").sign(message))


def verify(public: str, message: bytes, signature: str) -> bool:
    try:
        key = eddsa.import_public_key(b64decode(public))
        eddsa.new(key, "rfc8032").verify(message, b64decode(signature))
    except (ValueError, TypeError):
        return False
    return True


def _signable(obj: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(obj: dict[str, Any], user_id: str, key_id: str, key: SigningKey) -> dict[str, Any]:
    """A copy of ``obj`` with one more signature (``key_id`` is "ed25519:<id>")."""
    signed = dict(obj)
    signature = key.sign(_signable(obj))
    sigs = {u: dict(s) for u, s in obj.get("signatures", {}).items()}
    sigs.setdefault(user_id, {})[key_id] = signature
    signed["signatures"] = sigs
    return signed


def signed_by(obj: dict[str, Any], user_id: str, key_id: str, public: str) -> bool:
    """Whether ``obj`` carries a good signature of ``user_id``'s key ``key_id``."""
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        return False
    signature = (sigs.get(user_id) or {}).get(key_id)
    if not isinstance(signature, str):
        return False
    try:
        message = _signable(obj)
    except (TypeError, ValueError):
        return False
    return verify(public, message, signature)


def cross_signing_key(user_id: str, usage: str, key: SigningKey) -> dict[str, Any]:
    public = key.public
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


def only_key(key_object: dict[str, Any]) -> str | None:
    """The public key of a cross-signing key object (it holds exactly one)."""
    keys = key_object.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    value = next(iter(keys.values()))
    return value if isinstance(value, str) else None


def device_cross_signed(
    user_id: str,
    device: dict[str, Any],
    master: dict[str, Any] | None,
    self_signing: dict[str, Any] | None,
) -> bool:
    """Whether the owner cross-signed ``device`` (what Element's exclude-insecure-devices
    mode asks): device signed by the self-signing key, which the master key signed."""
    if not master or not self_signing:
        return False
    if master.get("user_id") != user_id or self_signing.get("user_id") != user_id:
        return False
    master_pub, ssk_pub = only_key(master), only_key(self_signing)
    if master_pub is None or ssk_pub is None:
        return False
    if not signed_by(self_signing, user_id, f"ed25519:{master_pub}", master_pub):
        return False
    return signed_by(device, user_id, f"ed25519:{ssk_pub}", ssk_pub)


def device_trust(
    user_id: str,
    device: dict[str, Any],
    master: dict[str, Any] | None,
    self_signing: dict[str, Any] | None,
) -> str:
    """``"cross-signed"``, ``"unsigned"`` (its owner has not signed it, or has no
    cross-signing identity), or ``"bad-signature"``: it carries a signature of its owner's
    self-signing key that does not verify, or that key's own signature by the master key
    does not, which is what a forged device looks like."""
    if device_cross_signed(user_id, device, master, self_signing):
        return "cross-signed"
    if not master or not self_signing:
        return "unsigned"
    master_pub, ssk_pub = only_key(master), only_key(self_signing)
    if master_pub is None or ssk_pub is None:
        return "bad-signature"
    claimed = ((device.get("signatures") or {}).get(user_id) or {}).get(f"ed25519:{ssk_pub}")
    if claimed is None:
        return "unsigned"
    return "bad-signature"  # signed by the self-signing key, and that did not verify


# -- recovery key --------------------------------------------------------------------


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = _B58[rest] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise BadKey("the recovery key has a character that is not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def encode_recovery_key(key: bytes) -> str:
    """The spec's recovery key: base58 of 0x8B 0x01 + key + parity, in groups of four."""
    data = _RECOVERY_PREFIX + key
    parity = 0
    for byte in data:
        parity ^= byte
    text = _b58encode(data + bytes([parity]))
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes:
    data = _b58decode("".join(text.split()))
    if len(data) != 35 or data[:2] != _RECOVERY_PREFIX:
        raise BadKey("this is not a Matrix recovery key (wrong length or prefix)")
    parity = 0
    for byte in data:
        parity ^= byte
    if parity != 0:
        raise BadKey("the recovery key has a typo (its parity check fails)")
    return data[2:34]


# -- secret storage (m.secret_storage.v1.aes-hmac-sha2) -----------------------------------


def _derive(key: bytes, name: str) -> tuple[bytes, bytes]:
    out = HKDF(key, 64, b"\0" * 32, SHA256, context=name.encode())
    assert isinstance(out, bytes)
    return out[:32], out[32:]


def encrypt_secret(key: bytes, name: str, secret: str, iv: bytes | None = None) -> dict[str, str]:
    """Encrypt one secret for account data (AES-CTR-256 + HMAC-SHA256, keys from HKDF)."""
    aes_key, mac_key = _derive(key, name)
    counter = bytearray(iv or secrets.token_bytes(16))
    counter[8] &= 0x7F  # the spec clears bit 63 so the counter never wraps for Android's sake
    cipher = AES.new(aes_key, AES.MODE_CTR, initial_value=bytes(counter), nonce=b"")
    ciphertext = cipher.encrypt(secret.encode("utf-8"))
    mac = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()
    return {
        "iv": base64.b64encode(bytes(counter)).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "mac": base64.b64encode(mac).decode(),
    }


def decrypt_secret(key: bytes, name: str, encrypted: dict[str, Any]) -> str:
    aes_key, mac_key = _derive(key, name)
    try:
        iv = b64decode(str(encrypted["iv"]))
        ciphertext = b64decode(str(encrypted["ciphertext"]))
        mac = b64decode(str(encrypted["mac"]))
    except (KeyError, ValueError) as e:
        raise BadKey(f"secret {name} is not stored in the expected form") from e
    expected = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise BadKey(f"secret {name} does not decrypt with this recovery key (bad MAC)")
    cipher = AES.new(aes_key, AES.MODE_CTR, initial_value=iv, nonce=b"")
    return cipher.decrypt(ciphertext).decode("utf-8")


def key_description(key: bytes, name: str = "libhub recovery key") -> dict[str, Any]:
    """The ``m.secret_storage.key.<id>`` content: iv and MAC of 32 zero bytes, name ""."""
    check = encrypt_secret(key, "", "\0" * 32)
    return {"name": name, "algorithm": SSSS_ALGORITHM, "iv": check["iv"], "mac": check["mac"]}


def key_matches(key: bytes, description: dict[str, Any]) -> bool:
    if description.get("algorithm") != SSSS_ALGORITHM:
        return False
    iv = description.get("iv")
    mac = description.get("mac")
    if not isinstance(iv, str) or not isinstance(mac, str):
        return True  # very old keys carry no check; decrypting the secret's MAC decides
    check = encrypt_secret(key, "", "\0" * 32, iv=b64decode(iv))
    return hmac.compare_digest(b64decode(check["mac"]), b64decode(mac))
