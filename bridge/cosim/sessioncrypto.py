"""Real key establishment per started session and real AES-GCM records per delivered message.

The cost model (``qesif_core.costs``) prices a run's handshakes and ciphers; this module makes the run
actually perform them, on the orchestrator's side of the bridge, where the QKD key pools are (the bridge
carries key IDs only):

- every session a ``KEY_REQUEST`` lists runs its plan's key establishment with ``qesif_core.crypto``:
  ``qkd-psk`` derives the session key with HKDF from the granted QKD key's bytes and delivers it wrapped
  under the device's key-encryption key; ``x25519``, ``mlkem768`` and ``x25519-mlkem768`` run the real
  exchange (mixed with the QKD key when a post-quantum plan also consumes one);
- the device side keeps an :class:`~qesif_core.crypto.AeadChannel` under its key (one AES-GCM object per
  session, nonces from its record counter), the control centre one under the key it derived, and each
  delivered message is sealed by the first and opened by the second. A record that fails to open is
  counted in ``aead_failures`` (and logged), never dropped silently.

Randomness: payload bytes come from the run's seeded generator; handshake secrets, salts and device
key-encryption keys come from the OS (``cryptography`` draws ML-KEM encapsulation randomness itself
anyway). No reported number depends on either: the results count handshakes and records, whose numbers
follow from the plans and the telemetry alone, so a run stays byte-identical for the same seed.

Attribution of deliveries: ``TELEMETRY`` (protocol v1) reports per round the number of messages delivered
and their payload total, not which session each message belongs to nor each one's size. The round's
delivered payload is therefore sealed as ``messages_delivered`` records whose sizes sum to
``payload_bytes_delivered`` (split evenly, the first ones a byte longer), assigned in turn to the sessions
of the round's devices (to all live sessions when no device had traffic in the round).
"""

from __future__ import annotations

import logging
import os
import uuid

import numpy as np

from qesif_core import crypto
from qesif_core.schemes.base import HANDSHAKES, SessionPlan

log = logging.getLogger(__name__)

#: Handshake kinds a run can perform: the plans' handshakes, and the post-quantum ones mixed with a QKD key.
HANDSHAKE_KINDS: tuple[str, ...] = HANDSHAKES + tuple(
    f"{kind}+qkd-psk" for kind in HANDSHAKES if kind != "qkd-psk"
)
#: Bound on one delivered message's payload accepted from a peer (bytes); guards memory, not realism.
MAX_MESSAGE_BYTES = 65536
DEVICE_KEK_BYTES = 16


class SessionCrypto:
    """The live sessions of one run (device side and control-centre side) and their counters."""

    def __init__(self, payload_rng: np.random.Generator) -> None:
        self._payload_rng = payload_rng
        self._device_keks: dict[int, bytes] = {}
        self._device_side: dict[int, crypto.AeadChannel] = {}
        self._centre_side: dict[int, crypto.AeadChannel] = {}
        self.handshakes: dict[str, int] = dict.fromkeys(HANDSHAKE_KINDS, 0)
        self.records_sealed = 0
        self.records_opened = 0
        self.aead_failures = 0

    def __repr__(self) -> str:
        return (
            f"SessionCrypto(live_sessions={self.live_sessions}, "
            f"handshakes={sum(self.handshakes.values())}, "
            f"records_sealed={self.records_sealed}, aead_failures={self.aead_failures})"
        )

    @property
    def live_sessions(self) -> int:
        """Devices holding a session (each keeps its latest one)."""
        return len(self._device_side)

    def _kek(self, device: int) -> bytes:
        """The device's key-encryption key, provisioned at enrolment (first use)."""
        if device not in self._device_keks:
            self._device_keks[device] = os.urandom(DEVICE_KEK_BYTES)
        return self._device_keks[device]

    def start_session(
        self, device: int, plan: SessionPlan, *, key_id: str | None = None, qkd_key: bytes | None = None
    ) -> str:
        """Run ``plan``'s key establishment for ``device`` and replace its session; returns the kind run."""
        quantum = qkd_key is not None
        handshake = crypto.establish(
            plan.handshake,
            key_bytes=crypto.SESSION_KEY_BYTES[plan.cipher],
            qkd_key=qkd_key,
            key_id=uuid.UUID(key_id).bytes if quantum and key_id is not None else None,
            device_id=f"device-{device}",
            device_kek=self._kek(device) if quantum else None,
        )
        self.handshakes[handshake.kind] += 1
        # Each side keeps the key it derived itself: a disagreement shows up as failed records.
        self._device_side[device] = crypto.AeadChannel(handshake.initiator_key)
        self._centre_side[device] = crypto.AeadChannel(handshake.responder_key)
        return handshake.kind

    def deliver_round(self, session_devices: list[int], messages: int, payload_bytes: int) -> None:
        """Seal the round's delivered payload at the devices and open it at the control centre."""
        if messages <= 0:
            return
        holders = [d for d in dict.fromkeys(session_devices) if d in self._device_side]
        if not holders:
            holders = sorted(self._device_side)
        if not holders:
            raise RuntimeError(f"{messages} messages delivered before any session was established")
        payload = self._payload_rng.bytes(payload_bytes)
        base, longer = divmod(payload_bytes, messages)
        offset = 0
        for index in range(messages):
            size = base + (index < longer)
            plaintext = payload[offset : offset + size]
            offset += size
            device = holders[index % len(holders)]
            aad = device.to_bytes(4, "big")
            record = self._transmit(self._device_side[device].seal(plaintext, aad))
            self.records_sealed += 1
            try:
                opened = self._centre_side[device].open(record, aad)
            except ValueError:
                opened = None
            if opened != plaintext:
                self.aead_failures += 1
                log.warning("device %d: a delivered record failed AES-GCM authentication", device)
                continue
            self.records_opened += 1

    @staticmethod
    def _transmit(record: bytes) -> bytes:
        """The record as the control centre receives it (unchanged; tests tamper here)."""
        return record
