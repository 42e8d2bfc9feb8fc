# cython: language_level=3
"""Compiled Algorithm 2 (Q-IDS) hot loop; the pure twin is ``qesif_core.qids._anomaly_py``.

Both twins run the same IEEE-754 double operations in the same order, so their flags, scores and
thresholds agree bit for bit (tests check this). See ``qesif_core.qids.anomaly`` for the model.
"""

import numpy as np

cimport numpy as cnp
from libc.math cimport fabs

cnp.import_array()


def algorithm2(
    const double[:, ::1] h_q,
    const double[:, ::1] qber,
    const double[:, ::1] key_drop,
    const double[::1] hbar_q,
    const double[::1] inv_qber_ref,
    const double[::1] noise_mean,
    const double[::1] inv_noise_std,
    const double[::1] alpha_start,
    const double[::1] alpha_min,
    const double[::1] alpha_max,
    double w1,
    double w2,
    double w3,
    double eta,
    double inv_dt,
):
    """Eq. (3), Eq. (4) and the flag of Algorithm 2 for ``links x blocks`` traces.

    Per-link inputs: the calibration (Hbar_q, 1/QBER_ref, benign score mean and 1/std) and the threshold's
    start and clamp band. Returns ``(score, threshold, flags)``: A_q(t), alpha^{t+1} and
    ``A_q(t) >= alpha^{t+1}`` as uint8.
    """
    cdef Py_ssize_t n_links = h_q.shape[0]
    cdef Py_ssize_t n_blocks = h_q.shape[1]
    score_arr = np.empty((n_links, n_blocks), dtype=np.float64)
    threshold_arr = np.empty((n_links, n_blocks), dtype=np.float64)
    flags_arr = np.empty((n_links, n_blocks), dtype=np.uint8)
    cdef double[:, ::1] score = score_arr
    cdef double[:, ::1] threshold = threshold_arr
    cdef unsigned char[:, ::1] flags = flags_arr
    cdef Py_ssize_t link, t
    cdef double alpha, previous, a, increment, z, p_noise, hbar, inv_ref, mean, inv_std, low, high
    cdef bint have_previous
    cdef const double* h_row
    cdef const double* q_row
    cdef const double* k_row
    cdef double* score_row
    cdef double* threshold_row
    cdef unsigned char* flag_row
    if n_blocks == 0:
        return score_arr, threshold_arr, flags_arr
    with nogil:
        for link in range(n_links):
            alpha = alpha_start[link]
            hbar = hbar_q[link]
            inv_ref = inv_qber_ref[link]
            mean = noise_mean[link]
            inv_std = inv_noise_std[link]
            low = alpha_min[link]
            high = alpha_max[link]
            h_row = &h_q[link, 0]
            q_row = &qber[link, 0]
            k_row = &key_drop[link, 0]
            score_row = &score[link, 0]
            threshold_row = &threshold[link, 0]
            flag_row = &flags[link, 0]
            previous = 0.0
            have_previous = False
            for t in range(n_blocks):
                a = w1 * fabs(h_row[t] - hbar) + w2 * (q_row[t] * inv_ref) + w3 * k_row[t]
                score_row[t] = a
                if a != a:
                    threshold_row[t] = alpha
                    flag_row[t] = 0
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
    return score_arr, threshold_arr, flags_arr
