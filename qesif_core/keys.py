"""Key management: per-gateway-link QKD key pools with ETSI GS QKD 014 delivery, U_K (Eq. 6), device keys.

A :class:`KeyPool` is the key store of one KME pair (the two ends of one gateway link). The QKD engine
feeds it the secret bits of each accepted block; the pool cuts them into keys of ``key_size`` bits,
each with a UUID key_ID, its provenance (block, QBER, epsilon) and an expiry time.

Delivery follows ETSI GS QKD 014 V1.1.1 as Python calls (an HTTP front end can map onto them 1:1):

- :meth:`KeyPool.status` -> the Status object (``source_KME_ID``, ``target_KME_ID``, ``master_SAE_ID``,
  ``slave_SAE_ID``, ``key_size``, ``stored_key_count``, ``max_key_count``, ``max_key_per_request``,
  ``max_key_size``, ``min_key_size``, ``max_SAE_ID_count``);
- :meth:`KeyPool.enc_keys` ("Get key", called by the master SAE) -> a Key container
  ``{"keys": [{"key_ID": ..., "key": <base64>}]}``;
- :meth:`KeyPool.dec_keys` ("Get key with key IDs", called by the slave SAE) -> the same keys, by ID.

Each key goes to the master SAE once and then to the slave SAE once, after which it is erased; a second
request for a delivered key_ID is an error (:class:`KeyDeliveryError`, status 400 as in the spec). Errors
name key_IDs and SAE IDs, never key bytes.

U_K(t) = K_generated(t) / K_max(t) (Eq. 6): K_generated is the number of valid keys the link produced in
the window ending at t (keys from accepted blocks, not yet expired when counted); K_max is the number of
keys the pool could have taken in that window, ``max_key_count`` (the storage limit of the gateway's KME,
the paper's "device limitations"). This reading of "maximum possible key capacity" is ours; it makes
U_K = 1 mean "the link produces keys as fast as the gateway can store them".

Device session keys: :class:`DeviceKeyService` turns one delivered QKD key into a session key for one
device (HKDF, see :mod:`qesif_core.crypto`) wrapped under the device's key-encryption key;
:class:`RekeyPolicy` says when a session key must be replaced.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qesif_core import crypto

logger = logging.getLogger(__name__)


class KeyDeliveryError(RuntimeError):
    """A refused ETSI 014 request; ``status`` is the HTTP status the REST form would return."""

    def __init__(self, status: int, message: str, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)

    def as_error_object(self) -> dict[str, Any]:
        """The ETSI 014 Error object: ``{"message": ..., "details": [...]}``."""
        out: dict[str, Any] = {"message": self.message}
        if self.details:
            out["details"] = [{"detail": d} for d in self.details]
        return out


@dataclass(frozen=True)
class KeyProvenance:
    """Where a key came from: the QKD block, its measured QBER and its security parameter epsilon."""

    link: str
    block: int
    qber: float
    epsilon: float
    created_at: float


@dataclass
class QkdKey:
    """One key in a pool. The key bytes are never shown in repr; a key cut from deferred bits
    (:class:`DeferredBits`) gets its bytes when first delivered."""

    key_id: str
    material: bytes | _KeyMaterial = field(repr=False)
    provenance: KeyProvenance
    expires_at: float
    delivered_to_master: bool = False

    @property
    def key(self) -> bytes:
        if not isinstance(self.material, bytes):
            self.material = self.material.pack()
        return self.material


def _uuid_from(rng: np.random.Generator) -> str:
    """A version-4 UUID drawn from the caller's generator (reproducible key_IDs)."""
    return _uuid4_texts(rng.bytes(16))[0]


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Where the 32 hex digits go in the 36 characters of a UUID's text (hyphens at 8, 13, 18, 23).
_UUID_DIGIT_COLUMNS = np.array([c for c in range(36) if c not in (8, 13, 18, 23)])


def _uuid4_texts(raw: bytes) -> list[str]:
    """``str(uuid.UUID(bytes=chunk, version=4))`` for each 16-byte chunk of ``raw``, in one pass (a pool
    names tens of thousands of keys per run)."""
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).copy()
    octets[:, 6] = octets[:, 6] & 0x0F | 0x40  # version 4
    octets[:, 8] = octets[:, 8] & 0x3F | 0x80  # RFC 4122 variant
    text = np.full((octets.shape[0], 36), ord("-"), dtype=np.uint8)
    digits = text[:, _UUID_DIGIT_COLUMNS]
    digits[:, 0::2] = _HEX_DIGITS[octets >> 4]
    digits[:, 1::2] = _HEX_DIGITS[octets & 0x0F]
    text[:, _UUID_DIGIT_COLUMNS] = digits
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, len(joined), 36)]


class _IdDraws:
    """key_IDs for a block's keys from one draw of ``rng``: the same bytes, in the same order, as one
    ``rng.bytes(16)`` per key (the generator's 32-bit outputs are buffered across calls), with more
    drawn one at a time should a collision need a redraw."""

    def __init__(self, rng: np.random.Generator, expected: int) -> None:
        self._rng = rng
        self._ids = _uuid4_texts(rng.bytes(16 * expected)) if expected > 0 else []
        self._next = 0

    def __call__(self) -> str:
        if self._next >= len(self._ids):
            return _uuid_from(self._rng)
        self._next += 1
        return self._ids[self._next - 1]


class DeferredBits:
    """Secret bits that exist but are derived only when a key made of them is first delivered: ``load()``
    recomputes them exactly (a QKD block run again from its generator's saved state, ``bridge.cosim.links``),
    so a run that reads a block's figures from a shared cache still keys its sessions with that block's own
    reconciled and amplified bits, and pays for them only for the blocks whose keys are used."""

    __slots__ = ("_bits", "_load", "size")

    def __init__(self, size: int, load: Callable[[], np.ndarray]) -> None:
        self.size = int(size)
        self._load: Callable[[], np.ndarray] | None = load
        self._bits: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"DeferredBits(size={self.size}, loaded={self._bits is not None})"

    def bits(self) -> np.ndarray:
        if self._bits is None:
            assert self._load is not None
            bits = np.asarray(self._load(), dtype=np.uint8)
            if bits.shape != (self.size,):
                raise RuntimeError(f"deferred secret bits came back with {bits.size} bits, not {self.size}")
            self._bits, self._load = bits, None
        return self._bits


#: Secret bits as the QKD engine gives them (0/1 array) or deferred until a key of them is delivered.
SecretBits = np.ndarray | DeferredBits


def key_bits_of(secret_bits: SecretBits) -> np.ndarray:
    """The 0/1 array of ``secret_bits``, deriving deferred bits now."""
    return secret_bits.bits() if isinstance(secret_bits, DeferredBits) else np.asarray(secret_bits)


class _KeyMaterial:
    """The bits of one key as slices of the blocks they came from; packed into bytes on first use."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[tuple[SecretBits, int, int]]) -> None:
        self._parts = parts

    def __repr__(self) -> str:
        return "_KeyMaterial(...)"

    def pack(self) -> bytes:
        bits = np.concatenate([key_bits_of(source)[start:stop] for source, start, stop in self._parts])
        return np.packbits(bits).tobytes()


class KeyPool:
    """The key store of one gateway link (one KME pair) with ETSI GS QKD 014 delivery.

    ``master_sae_id`` is the gateway application that asks for keys first (``enc_keys``);
    ``slave_sae_id`` the peer that fetches the same keys by ID (``dec_keys``).
    """

    def __init__(
        self,
        *,
        link: str,
        source_kme_id: str,
        target_kme_id: str,
        master_sae_id: str,
        slave_sae_id: str,
        rng: np.random.Generator,
        key_size: int = 256,
        max_key_count: int = 1000,
        max_key_per_request: int = 16,
        max_key_size: int = 1024,
        min_key_size: int = 64,
        key_lifetime_s: float = 3600.0,
        utilisation_window_s: float = 60.0,
    ) -> None:
        if key_size % 8 or not min_key_size <= key_size <= max_key_size:
            raise ValueError(f"KeyPool {link}: key_size {key_size} must be a multiple of 8 in [min, max]")
        self.link = link
        self.source_kme_id = source_kme_id
        self.target_kme_id = target_kme_id
        self.master_sae_id = master_sae_id
        self.slave_sae_id = slave_sae_id
        self.key_size = key_size
        self.max_key_count = max_key_count
        self.max_key_per_request = max_key_per_request
        self.max_key_size = max_key_size
        self.min_key_size = min_key_size
        self.key_lifetime_s = key_lifetime_s
        self.utilisation_window_s = utilisation_window_s
        self._rng = rng
        self._available: OrderedDict[str, QkdKey] = OrderedDict()  # not yet given to the master SAE
        self._awaiting_slave: dict[str, QkdKey] = {}  # given to the master, not yet to the slave
        self._issued_ids: set[str] = set()
        self._provenance: dict[str, KeyProvenance] = {}
        self._generated_at: list[float] = []
        # Bits of the next key not yet complete: slices (source, start, stop) of the blocks they came from.
        self._pending: list[tuple[SecretBits, int, int]] = []
        self._pending_provenance: KeyProvenance | None = None
        self.keys_generated = 0
        self.keys_expired = 0
        self.keys_dropped_full = 0
        self.keys_delivered = 0

    def __repr__(self) -> str:
        return (
            f"KeyPool(link={self.link!r}, stored_key_count={self.stored_key_count}, "
            f"keys_generated={self.keys_generated}, keys_delivered={self.keys_delivered})"
        )

    @property
    def stored_key_count(self) -> int:
        return len(self._available)

    # ----------------------------------------------------------------- feeding from the QKD engine
    def add_block(
        self, secret_bits: SecretBits, *, block: int, qber: float, epsilon: float, now: float
    ) -> int:
        """Add the secret bits of one accepted QKD block; returns the number of whole keys added.

        Bits left over (fewer than ``key_size``) are kept and completed by the next block; such a key
        carries the provenance of the worse (larger epsilon, larger QBER) of the blocks it came from.
        Deferred bits (:class:`DeferredBits`) are cut into keys by count and derived when first delivered.
        """
        if not isinstance(secret_bits, DeferredBits):
            secret_bits = np.asarray(secret_bits, dtype=np.uint8)
            if secret_bits.ndim != 1 or (secret_bits.size and secret_bits.max() > 1):
                raise ValueError(f"KeyPool {self.link}: secret_bits must be a 1-D 0/1 array")
        provenance = KeyProvenance(self.link, int(block), float(qber), float(epsilon), float(now))
        if self._pending and self._pending_provenance is not None:
            old = self._pending_provenance
            provenance = KeyProvenance(
                self.link, provenance.block, max(old.qber, provenance.qber),
                max(old.epsilon, provenance.epsilon), provenance.created_at,
            )  # fmt: skip
        pending_size = sum(stop - start for _, start, stop in self._pending)
        n_keys = (pending_size + secret_bits.size) // self.key_size
        draws = _IdDraws(self._rng, n_keys)
        parts, filled, start = self._pending, pending_size, 0
        for _ in range(n_keys):
            stop = start + self.key_size - filled
            parts.append((secret_bits, start, stop))
            material = _KeyMaterial(parts)
            deferred = any(isinstance(source, DeferredBits) for source, _, _ in parts)
            self._store(material if deferred else material.pack(), provenance, now, draws)
            parts, filled, start = [], 0, stop
        if start < secret_bits.size:
            parts.append((secret_bits, start, secret_bits.size))
        self._pending = parts
        self._pending_provenance = provenance if parts else None
        return n_keys

    def _store(
        self, key: bytes | _KeyMaterial, provenance: KeyProvenance, now: float, draws: _IdDraws
    ) -> None:
        key_id = draws()
        while key_id in self._issued_ids:  # 2^-122 per draw, but uniqueness is a guarantee, not a hope
            key_id = draws()
        self._issued_ids.add(key_id)
        self._provenance[key_id] = provenance
        self.keys_generated += 1
        self._generated_at.append(now)
        if len(self._available) >= self.max_key_count:
            self.keys_dropped_full += 1  # the KME store is full: the key is erased unused
            return
        self._available[key_id] = QkdKey(key_id, key, provenance, now + self.key_lifetime_s)

    def provenance(self, key_id: str) -> KeyProvenance:
        """Provenance of any key this pool has issued (kept after delivery; it holds no key bytes)."""
        try:
            return self._provenance[key_id]
        except KeyError:
            raise KeyError(f"link {self.link!r} never issued key_ID {key_id!r}") from None

    def expires_at(self, key_id: str) -> float:
        """End of the lifetime of a key still held (available, or owed to the slave SAE)."""
        entry = self._available.get(key_id) or self._awaiting_slave.get(key_id)
        if entry is None:
            raise KeyError(f"link {self.link!r} holds no key_ID {key_id!r}")
        return entry.expires_at

    def expire(self, now: float) -> int:
        """Erase keys past their lifetime (both stores); returns how many."""
        expired = [k for k, v in self._available.items() if v.expires_at <= now]
        expired_slave = [k for k, v in self._awaiting_slave.items() if v.expires_at <= now]
        for key_id in expired:
            del self._available[key_id]
        for key_id in expired_slave:
            del self._awaiting_slave[key_id]
        self.keys_expired += len(expired) + len(expired_slave)
        if expired or expired_slave:
            logger.debug("link %s: %d keys expired", self.link, len(expired) + len(expired_slave))
        return len(expired) + len(expired_slave)

    # ----------------------------------------------------------------- ETSI GS QKD 014 delivery
    def _check_caller(self, caller: str, expected: str, role: str) -> None:
        if caller != expected:
            raise KeyDeliveryError(401, f"SAE {caller!r} is not the {role} SAE of link {self.link!r}")

    def status(self, slave_sae_id: str, *, caller: str, now: float | None = None) -> dict[str, Any]:
        """ETSI 014 "Get status" (``GET /api/v1/keys/{slave_SAE_ID}/status``) by the master SAE."""
        self._check_caller(caller, self.master_sae_id, "master")
        if slave_sae_id != self.slave_sae_id:
            raise KeyDeliveryError(400, f"slave_SAE_ID {slave_sae_id!r} is not served on link {self.link!r}")
        if now is not None:
            self.expire(now)
        return {
            "source_KME_ID": self.source_kme_id,
            "target_KME_ID": self.target_kme_id,
            "master_SAE_ID": self.master_sae_id,
            "slave_SAE_ID": self.slave_sae_id,
            "key_size": self.key_size,
            "stored_key_count": self.stored_key_count,
            "max_key_count": self.max_key_count,
            "max_key_per_request": self.max_key_per_request,
            "max_key_size": self.max_key_size,
            "min_key_size": self.min_key_size,
            "max_SAE_ID_count": 0,
        }

    def enc_keys(
        self, slave_sae_id: str, *, caller: str, now: float, number: int = 1, size: int | None = None
    ) -> dict[str, list[dict[str, str]]]:
        """ETSI 014 "Get key" (``GET /api/v1/keys/{slave_SAE_ID}/enc_keys``) by the master SAE.

        Returns ``number`` keys of the pool's ``key_size`` (oldest first); each key is then owed to the
        slave SAE once. ``size`` other than the pool's key size is refused (keys are not re-cut here).
        """
        self._check_caller(caller, self.master_sae_id, "master")
        if slave_sae_id != self.slave_sae_id:
            raise KeyDeliveryError(400, f"slave_SAE_ID {slave_sae_id!r} is not served on link {self.link!r}")
        if not 1 <= number <= self.max_key_per_request:
            raise KeyDeliveryError(
                400, f"number {number} is outside 1..max_key_per_request ({self.max_key_per_request})"
            )
        if size is not None and size != self.key_size:
            raise KeyDeliveryError(400, f"size {size} differs from the link's key_size {self.key_size}")
        self.expire(now)
        if number > self.stored_key_count:
            raise KeyDeliveryError(
                503, f"link {self.link!r} has {self.stored_key_count} keys, {number} requested"
            )
        keys = []
        for _ in range(number):
            key_id, entry = self._available.popitem(last=False)
            entry.delivered_to_master = True
            self._awaiting_slave[key_id] = entry
            keys.append(entry)
        logger.debug("link %s: enc_keys to %s: %s", self.link, caller, [k.key_id for k in keys])
        return _container(keys)

    def dec_keys(
        self, master_sae_id: str, key_ids: Iterable[str], *, caller: str, now: float
    ) -> dict[str, list[dict[str, str]]]:
        """ETSI 014 "Get key with key IDs" (``GET /api/v1/keys/{master_SAE_ID}/dec_keys``) by the slave.

        Each key is delivered to the slave once and erased; an unknown, expired or already delivered
        key_ID fails the whole request (nothing is delivered).
        """
        self._check_caller(caller, self.slave_sae_id, "slave")
        if master_sae_id != self.master_sae_id:
            raise KeyDeliveryError(400, f"master_SAE_ID {master_sae_id!r} is not on link {self.link!r}")
        wanted = list(key_ids)
        if not 1 <= len(wanted) <= self.max_key_per_request or len(set(wanted)) != len(wanted):
            raise KeyDeliveryError(400, "key_IDs must be 1..max_key_per_request distinct IDs")
        self.expire(now)
        missing = [k for k in wanted if k not in self._awaiting_slave]
        if missing:
            raise KeyDeliveryError(
                400, "key_ID not available (unknown, expired or already delivered)", missing
            )
        keys = [self._awaiting_slave.pop(k) for k in wanted]
        self.keys_delivered += len(keys)
        logger.debug("link %s: dec_keys to %s: %s", self.link, caller, wanted)
        return _container(keys)

    # ----------------------------------------------------------------- Eq. (6)
    def utilisation(self, now: float) -> float:
        """U_K(t) = K_generated(t) / K_max(t) over the window ``(now - utilisation_window_s, now]``."""
        start = now - self.utilisation_window_s
        generated = sum(1 for t in self._generated_at if start < t <= now)
        return generated / self.max_key_count


def _container(keys: list[QkdKey]) -> dict[str, list[dict[str, str]]]:
    """The ETSI 014 Key container: key_ID and base64-encoded key."""
    return {"keys": [{"key_ID": k.key_id, "key": base64.b64encode(k.key).decode("ascii")} for k in keys]}


def decode_key(entry: dict[str, str]) -> bytes:
    """The key bytes of one Key container entry."""
    return base64.b64decode(entry["key"], validate=True)


@dataclass(frozen=True)
class RekeyPolicy:
    """When a device's session key must be replaced.

    After ``max_records`` records or ``max_bytes`` of payload (well inside AES-GCM's limits), after
    ``max_age_s`` seconds, or at once when the Q-IDS flags the link the key came from.
    """

    max_records: int = 1000
    max_bytes: int = 1 << 20
    max_age_s: float = 600.0

    def needs_rekey(self, *, records: int, payload_bytes: int, age_s: float, link_flagged: bool) -> bool:
        return (
            link_flagged
            or records >= self.max_records
            or payload_bytes >= self.max_bytes
            or age_s >= self.max_age_s
        )


class DeviceKeyService:
    """Gateway side: one delivered QKD key -> a device session key, wrapped for that device.

    Each device has a key-encryption key (KEK) provisioned at enrolment, drawn here from the caller's
    generator. :meth:`session_key_for` takes one key from the link's pool through ETSI 014 (master and
    slave both fetch it, so the key_ID is consumed on both ends) and runs the real ``qkd-psk`` exchange.
    """

    def __init__(self, pool: KeyPool, rng: np.random.Generator, session_key_bytes: int = 16) -> None:
        self.pool = pool
        self._rng = rng
        self._keks: dict[str, bytes] = {}
        self.session_key_bytes = session_key_bytes

    def __repr__(self) -> str:
        return f"DeviceKeyService(link={self.pool.link!r}, devices={len(self._keks)})"

    def _kek(self, device_id: str) -> bytes:
        if device_id not in self._keks:
            self._keks[device_id] = self._rng.bytes(16)
        return self._keks[device_id]

    def session_key_for(self, device_id: str, *, now: float) -> tuple[str, crypto.Handshake]:
        """Consume one QKD key and deliver a session key to ``device_id``; returns (key_ID, handshake)."""
        pool = self.pool
        container = pool.enc_keys(pool.slave_sae_id, caller=pool.master_sae_id, now=now)
        key_id = container["keys"][0]["key_ID"]
        peer = pool.dec_keys(pool.master_sae_id, [key_id], caller=pool.slave_sae_id, now=now)
        qkd_key = decode_key(container["keys"][0])
        if decode_key(peer["keys"][0]) != qkd_key:
            raise crypto.HandshakeFailed(f"key_ID {key_id}: the two KMEs hold different keys")
        handshake = crypto.qkd_psk_handshake(
            qkd_key,
            key_id=uuid.UUID(key_id).bytes,
            device_id=device_id,
            device_kek=self._kek(device_id),
            key_bytes=self.session_key_bytes,
            rng=self._rng,
        )
        return key_id, handshake
