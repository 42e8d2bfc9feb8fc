"""Key establishment with the real crypto on this machine: handshakes per second for each path.

Paths (both sides computed in-process, as in :mod:`qesif_core.crypto`): QKD-PSK (HKDF from a QKD key +
AES key wrap to the device), X25519, ML-KEM-768, X25519 + ML-KEM-768; plus AES-GCM records per second.
Each figure is the median of REPEATS timings of BATCH operations; ratios are to X25519 measured in the
same run. The ``gateway_*_host_s`` figures re-measure the per-primitive times that
``qesif_core/data/costs.yaml`` holds for the gateway cost model (compare them with the YAML values).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from timing import median_seconds

from qesif_core import crypto

BATCH = 100
REPEATS = 7


def _median_seconds(operation: Callable[[], object]) -> float:
    return median_seconds(operation, REPEATS, BATCH)


def run() -> dict:
    rng = np.random.default_rng(2025)
    qkd_key, key_id, kek = rng.bytes(32), rng.bytes(16), rng.bytes(16)
    paths = {
        "qkd_psk": lambda: crypto.qkd_psk_handshake(
            qkd_key, key_id=key_id, device_id="dev-1", device_kek=kek
        ),
        "x25519": crypto.x25519_handshake,
        "mlkem768": crypto.mlkem768_handshake,
        "x25519_mlkem768": crypto.hybrid_x25519_mlkem768_handshake,
    }
    figures: dict[str, float | int] = {"repeats": REPEATS, "batch": BATCH}
    seconds = {name: _median_seconds(op) for name, op in paths.items()}
    for name, s in seconds.items():
        figures[f"{name}_handshakes_per_s"] = round(1.0 / s, 1)
        if name != "x25519":
            figures[f"{name}_vs_x25519"] = round(seconds["x25519"] / s, 3)

    channel = crypto.AeadChannel(rng.bytes(16))
    payload = rng.bytes(64)
    figures["aes128gcm_64B_records_per_s"] = round(1.0 / _median_seconds(lambda: channel.seal(payload)), 1)

    ecdh, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    kem = MLKEM768PrivateKey.generate()
    encapsulation_key = kem.public_key()
    _, ciphertext = encapsulation_key.encapsulate()
    primitives = {
        "x25519_keygen": lambda: X25519PrivateKey.generate().public_key(),
        "x25519_exchange": lambda: ecdh.exchange(peer),
        "mlkem768_keygen": lambda: MLKEM768PrivateKey.generate().public_key(),
        "mlkem768_encaps": encapsulation_key.encapsulate,
        "mlkem768_decaps": lambda: kem.decapsulate(ciphertext),
        "hkdf": lambda: crypto.hkdf(qkd_key, salt=key_id, info=b"bench", length=16),
        "key_wrap": lambda: crypto.wrap_key(kek, qkd_key[:16]),
    }
    for name, op in primitives.items():
        figures[f"gateway_{name}_host_s"] = float(f"{_median_seconds(op):.3g}")
    return figures


if __name__ == "__main__":
    print(run())
