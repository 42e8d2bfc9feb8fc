"""Pure-Python twin of ``qesif_core.qids._anomaly`` (Algorithm 2 hot loop).

It performs the same IEEE-754 double operations in the same order as the Cython loop, so the two agree
bit for bit; it is the reference the compiled loop is tested against and the fallback when unbuilt.
"""

from __future__ import annotations

import numpy as np


def algorithm2(
    h_q: np.ndarray,
    qber: np.ndarray,
    key_drop: np.ndarray,
    hbar_q: np.ndarray,
    inv_qber_ref: np.ndarray,
    noise_mean: np.ndarray,
    inv_noise_std: np.ndarray,
    alpha_start: np.ndarray,
    alpha_min: np.ndarray,
    alpha_max: np.ndarray,
    w1: float,
    w2: float,
    w3: float,
    eta: float,
    inv_dt: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. (3), Eq. (4) and the flag of Algorithm 2 for ``links x blocks`` traces.

    Per-link inputs: the calibration (Hbar_q, 1/QBER_ref, benign score mean and 1/std) and the threshold's
    start and clamp band. Returns ``(score, threshold, flags)``: A_q(t), alpha^{t+1} and
    ``A_q(t) >= alpha^{t+1}`` as uint8.
    """
    n_links, n_blocks = h_q.shape
    score = np.empty((n_links, n_blocks), dtype=np.float64)
    threshold = np.empty((n_links, n_blocks), dtype=np.float64)
    flags = np.zeros((n_links, n_blocks), dtype=np.uint8)
    w1, w2, w3, eta, inv_dt = float(w1), float(w2), float(w3), float(eta), float(inv_dt)
    for link in range(n_links):
        alpha = float(alpha_start[link])
        hbar = float(hbar_q[link])
        inv_ref = float(inv_qber_ref[link])
        mean = float(noise_mean[link])
        inv_std = float(inv_noise_std[link])
        low = float(alpha_min[link])
        high = float(alpha_max[link])
        h_row = h_q[link].tolist()
        q_row = qber[link].tolist()
        k_row = key_drop[link].tolist()
        score_row = [0.0] * n_blocks
        threshold_row = [0.0] * n_blocks
        flag_row = [0] * n_blocks
        previous = 0.0
        have_previous = False
        for t in range(n_blocks):
            a = w1 * abs(h_row[t] - hbar) + w2 * (q_row[t] * inv_ref) + w3 * k_row[t]
            score_row[t] = a
            if a != a:
                threshold_row[t] = alpha
                continue
            if have_previous:
                z = (a - mean) * inv_std
                z = z if z > 0.0 else 0.0
                p_noise = 1.0 / (1.0 + z * z)
                increment = eta * ((a - previous) * inv_dt) * (1.0 - p_noise)
                if increment == increment:
                    alpha = alpha + increment
                    alpha = high if alpha > high else alpha
                    alpha = low if alpha < low else alpha
            previous = a
            have_previous = True
            threshold_row[t] = alpha
            flag_row[t] = a >= alpha
        score[link] = score_row
        threshold[link] = threshold_row
        flags[link] = flag_row
    return score, threshold, flags
