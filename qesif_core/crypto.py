"""Real key establishment and payload encryption (``cryptography``: X25519, ML-KEM-768, HKDF, AES-GCM).

Three key-establishment paths, each run for real between an initiator (the IoT device) and a responder
(the gateway), both sides computing the session key independently:

- ``qkd-psk``: the gateway derives a fresh session key from a QKD key with HKDF-SHA256 (salted with a
  fresh nonce, bound to the device identity) and sends it to the device wrapped (AES key wrap, RFC 3394)
  under the device's pre-provisioned key-encryption key. The device never runs QKD (paper, Sec. 3).
- ``x25519``: ephemeral X25519 on both sides, HKDF-SHA256 over the shared secret and the transcript.
- ``x25519-mlkem768``: X25519 plus ML-KEM-768 (FIPS 203), the two shared secrets concatenated into
  HKDF (the usual hybrid combiner, as in the TLS X25519MLKEM768 group); secure if either holds.
- ``mlkem768``: ML-KEM-768 alone.

Wire sizes are those of the real messages (:func:`handshake_wire_bytes`); tests check the handshakes produce
exactly these. Private keys can be derived from the caller's generator (X25519 scalars, ML-KEM seeds)
so a run is reproducible; ML-KEM encapsulation and AES-GCM nonce prefixes are not (``cryptography``
draws encapsulation randomness itself), which affects only key bytes, never sizes or results.

Key material lives in ``repr=False`` fields and never enters messages or exceptions.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

if TYPE_CHECKING:  # only the generators' type: numpy is slow to import and the cost model needs none
    import numpy as np

X25519_PUBLIC_BYTES = 32
MLKEM768_ENCAPSULATION_KEY_BYTES = 1184
MLKEM768_CIPHERTEXT_BYTES = 1088
QKD_PSK_NONCE_BYTES = 16
QKD_KEY_ID_BYTES = 16
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
KEY_WRAP_OVERHEAD_BYTES = 8


def handshake_wire_bytes(kind: str, key_bytes: int = 16) -> tuple[int, int]:
    """Bytes sent (device -> gateway, gateway -> device) by a key-establishment path.

    ``qkd-psk`` carries the key_ID, the HKDF salt and the wrapped session key (its size depends on the
    session key length); the others carry public keys / ciphertexts of fixed size.
    """
    sizes = {
        "qkd-psk": (0, QKD_KEY_ID_BYTES + QKD_PSK_NONCE_BYTES + key_bytes + KEY_WRAP_OVERHEAD_BYTES),
        "x25519": (X25519_PUBLIC_BYTES, X25519_PUBLIC_BYTES),
        "x25519-mlkem768": (
            X25519_PUBLIC_BYTES + MLKEM768_ENCAPSULATION_KEY_BYTES,
            X25519_PUBLIC_BYTES + MLKEM768_CIPHERTEXT_BYTES,
        ),
        "mlkem768": (MLKEM768_ENCAPSULATION_KEY_BYTES, MLKEM768_CIPHERTEXT_BYTES),
    }
    try:
        return sizes[kind]
    except KeyError:
        raise ValueError(f"unknown handshake kind {kind!r}; known: {', '.join(sizes)}") from None


SESSION_KEY_BYTES = {"aes-128-gcm": 16, "aes-256-gcm": 32}


class HandshakeFailed(RuntimeError):
    """The two sides did not derive the same key (a bug or tampering); carries no key material."""


@dataclass(frozen=True)
class Handshake:
    """Outcome of one real key establishment: both sides' keys and the bytes each side sent."""

    kind: str
    bytes_initiator_to_responder: int
    bytes_responder_to_initiator: int
    initiator_key: bytes = field(repr=False)
    responder_key: bytes = field(repr=False)

    @property
    def session_key(self) -> bytes:
        if self.initiator_key != self.responder_key:
            raise HandshakeFailed(f"{self.kind}: the two sides derived different keys")
        return self.initiator_key


def _secret_bytes(rng: np.random.Generator | None, n: int) -> bytes | None:
    """``n`` secret bytes from the caller's generator (reproducible runs), or None for the OS CSPRNG."""
    return None if rng is None else rng.bytes(n)


def hkdf(secret: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def _x25519_private(rng: np.random.Generator | None) -> X25519PrivateKey:
    scalar = _secret_bytes(rng, 32)
    return X25519PrivateKey.generate() if scalar is None else X25519PrivateKey.from_private_bytes(scalar)


def _mlkem_private(rng: np.random.Generator | None) -> MLKEM768PrivateKey:
    seed = _secret_bytes(rng, 64)
    return MLKEM768PrivateKey.generate() if seed is None else MLKEM768PrivateKey.from_seed_bytes(seed)


def _transcript_info(label: bytes, *messages: bytes) -> bytes:
    digest = hashlib.sha256(label)
    for message in messages:
        digest.update(struct.pack(">I", len(message)))
        digest.update(message)
    return label + b"|" + digest.digest()


def _key_exchange(
    kind: str, request: bytes, reply: bytes, device_secret: bytes, gateway_secret: bytes, key_bytes: int
) -> Handshake:
    """Each side's key = HKDF(its shared secret, the transcript of both flights)."""
    info = _transcript_info(b"qesif " + kind.encode(), request, reply)
    return Handshake(
        kind=kind,
        bytes_initiator_to_responder=len(request),
        bytes_responder_to_initiator=len(reply),
        initiator_key=hkdf(device_secret, salt=None, info=info, length=key_bytes),
        responder_key=hkdf(gateway_secret, salt=None, info=info, length=key_bytes),
    )


def x25519_handshake(key_bytes: int = 16, rng: np.random.Generator | None = None) -> Handshake:
    """Ephemeral X25519 between device and gateway, key = HKDF(shared secret, transcript)."""
    device, gateway = _x25519_private(rng), _x25519_private(rng)
    device_pub, gateway_pub = device.public_key().public_bytes_raw(), gateway.public_key().public_bytes_raw()
    device_secret = device.exchange(X25519PublicKey.from_public_bytes(gateway_pub))
    gateway_secret = gateway.exchange(X25519PublicKey.from_public_bytes(device_pub))
    return _key_exchange("x25519", device_pub, gateway_pub, device_secret, gateway_secret, key_bytes)


def mlkem768_handshake(key_bytes: int = 16, rng: np.random.Generator | None = None) -> Handshake:
    """ML-KEM-768: the device sends an encapsulation key, the gateway answers with a ciphertext."""
    device = _mlkem_private(rng)
    encapsulation_key = device.public_key().public_bytes_raw()
    gateway_secret, ciphertext = MLKEM768PublicKey.from_public_bytes(encapsulation_key).encapsulate()
    device_secret = device.decapsulate(ciphertext)
    return _key_exchange("mlkem768", encapsulation_key, ciphertext, device_secret, gateway_secret, key_bytes)


def hybrid_x25519_mlkem768_handshake(
    key_bytes: int = 16, rng: np.random.Generator | None = None
) -> Handshake:
    """X25519 + ML-KEM-768; key = HKDF(ss_mlkem || ss_x25519, transcript): secure while either holds."""
    device_ecdh, gateway_ecdh = _x25519_private(rng), _x25519_private(rng)
    device_kem = _mlkem_private(rng)
    device_ecdh_pub = device_ecdh.public_key().public_bytes_raw()
    encapsulation_key = device_kem.public_key().public_bytes_raw()
    gateway_ecdh_pub = gateway_ecdh.public_key().public_bytes_raw()
    gateway_kem_secret, ciphertext = MLKEM768PublicKey.from_public_bytes(encapsulation_key).encapsulate()
    gateway_secret = gateway_kem_secret + gateway_ecdh.exchange(
        X25519PublicKey.from_public_bytes(device_ecdh_pub)
    )
    device_secret = device_kem.decapsulate(ciphertext) + device_ecdh.exchange(
        X25519PublicKey.from_public_bytes(gateway_ecdh_pub)
    )
    request, reply = device_ecdh_pub + encapsulation_key, gateway_ecdh_pub + ciphertext
    return _key_exchange("x25519-mlkem768", request, reply, device_secret, gateway_secret, key_bytes)


def derive_device_session_key(qkd_key: bytes, *, device_id: str, salt: bytes, key_bytes: int = 16) -> bytes:
    """Session key for one device from a QKD key: HKDF-SHA256, salted, bound to the device identity."""
    return hkdf(qkd_key, salt=salt, info=b"qesif qkd-psk device=" + device_id.encode(), length=key_bytes)


def wrap_key(session_key: bytes, device_kek: bytes) -> bytes:
    """AES key wrap (RFC 3394) of a session key under the device's key-encryption key."""
    return aes_key_wrap(device_kek, session_key)


def unwrap_key(wrapped: bytes, device_kek: bytes) -> bytes:
    return aes_key_unwrap(device_kek, wrapped)


def qkd_psk_handshake(
    qkd_key: bytes,
    *,
    key_id: bytes,
    device_id: str,
    device_kek: bytes,
    key_bytes: int = 16,
    rng: np.random.Generator | None = None,
) -> Handshake:
    """The gateway turns a QKD key into a device session key and delivers it wrapped to the device.

    The gateway sends key_ID (16 bytes), the HKDF salt and the wrapped session key; the device unwraps
    with its key-encryption key. The QKD key itself never leaves the gateway.
    """
    if len(key_id) != QKD_KEY_ID_BYTES:
        raise ValueError(f"qkd_psk_handshake: key_id must be {QKD_KEY_ID_BYTES} bytes, got {len(key_id)}")
    salt = os.urandom(QKD_PSK_NONCE_BYTES) if rng is None else rng.bytes(QKD_PSK_NONCE_BYTES)
    gateway_key = derive_device_session_key(qkd_key, device_id=device_id, salt=salt, key_bytes=key_bytes)
    message = key_id + salt + wrap_key(gateway_key, device_kek)
    device_key = unwrap_key(message[QKD_KEY_ID_BYTES + QKD_PSK_NONCE_BYTES :], device_kek)
    return Handshake(
        kind="qkd-psk",
        bytes_initiator_to_responder=0,
        bytes_responder_to_initiator=len(message),
        initiator_key=device_key,
        responder_key=gateway_key,
    )


class AeadChannel:
    """AES-GCM record protection for one direction of a session, with counter nonces.

    Each record is ``nonce (12) || ciphertext || tag (16)``; the nonce is a 4-byte sender prefix and an
    8-byte record counter, so a nonce is never reused under one key. ``open`` rejects tampering.
    """

    def __init__(self, key: bytes, *, sender_prefix: bytes = b"\x00\x00\x00\x01") -> None:
        if len(key) not in (16, 32):
            raise ValueError(f"AeadChannel: key must be 16 or 32 bytes, got {len(key)}")
        if len(sender_prefix) != 4:
            raise ValueError("AeadChannel: sender_prefix must be 4 bytes")
        self._aead = AESGCM(key)
        self._prefix = sender_prefix
        self._counter = 0

    def __repr__(self) -> str:
        return f"AeadChannel(records_sealed={self._counter})"

    @property
    def records_sealed(self) -> int:
        return self._counter

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        if self._counter >= 2**64 - 1:
            raise OverflowError("AeadChannel: record counter exhausted; rekey")
        nonce = self._prefix + struct.pack(">Q", self._counter)
        self._counter += 1
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, record: bytes, aad: bytes = b"") -> bytes:
        if len(record) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
            raise ValueError("AeadChannel.open: record shorter than nonce + tag")
        try:
            return self._aead.decrypt(record[:GCM_NONCE_BYTES], record[GCM_NONCE_BYTES:], aad)
        except InvalidTag:
            raise ValueError(
                "AeadChannel.open: authentication failed (wrong key or tampered record)"
            ) from None


#: Per-record overhead of :class:`AeadChannel` in bytes (nonce + tag).
AEAD_RECORD_OVERHEAD = GCM_NONCE_BYTES + GCM_TAG_BYTES

HANDSHAKE_FUNCTIONS = {
    "x25519": x25519_handshake,
    "x25519-mlkem768": hybrid_x25519_mlkem768_handshake,
    "mlkem768": mlkem768_handshake,
}


def establish(
    handshake: str,
    *,
    key_bytes: int = 16,
    qkd_key: bytes | None = None,
    key_id: bytes | None = None,
    device_id: str = "",
    device_kek: bytes | None = None,
    rng: np.random.Generator | None = None,
) -> Handshake:
    """Run the key establishment a :class:`~qesif_core.schemes.SessionPlan` names, for real.

    ``qkd-psk`` needs ``qkd_key``, ``key_id`` and the device's ``device_kek``. A post-quantum or classical
    handshake given a ``qkd_key`` too mixes both: each side derives HKDF(k_exchange || k_qkd), so the
    session key is secret while either input is; the bytes of both exchanges are counted.
    """
    if handshake == "qkd-psk" or qkd_key is not None:
        if qkd_key is None or key_id is None or device_kek is None:
            raise ValueError(f"{handshake}: a QKD key needs qkd_key, key_id and device_kek")
        psk = qkd_psk_handshake(
            qkd_key, key_id=key_id, device_id=device_id, device_kek=device_kek, key_bytes=key_bytes, rng=rng
        )
        if handshake == "qkd-psk":
            return psk
    try:
        exchange = HANDSHAKE_FUNCTIONS[handshake](key_bytes=key_bytes, rng=rng)
    except KeyError:
        raise ValueError(f"unknown handshake kind {handshake!r}") from None
    if qkd_key is None:
        return exchange
    info = b"qesif " + handshake.encode() + b"+qkd-psk"
    return Handshake(
        kind=f"{handshake}+qkd-psk",
        bytes_initiator_to_responder=exchange.bytes_initiator_to_responder + psk.bytes_initiator_to_responder,
        bytes_responder_to_initiator=exchange.bytes_responder_to_initiator + psk.bytes_responder_to_initiator,
        initiator_key=hkdf(
            exchange.initiator_key + psk.initiator_key, salt=None, info=info, length=key_bytes
        ),
        responder_key=hkdf(
            exchange.responder_key + psk.responder_key, salt=None, info=info, length=key_bytes
        ),
    )
