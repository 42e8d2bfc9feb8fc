import numpy as np
import pandas as pd
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qids import _anomaly_py, anomaly
from qesif_core.qids.anomaly import Calibration, QidsParams

compiled = pytest.importorskip("qesif_core.qids._anomaly", reason="compiled twin not built (make build)")


def _h2(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -p * np.log2(p) - (1 - p) * np.log2(1 - p)


def make_trace(rng, qber_mean, n_blocks=200, sifted=4000):
    """A QKD trace with the link_trace columns, from binomial error counts (stand-in for the engine)."""
    qber = rng.binomial(sifted, qber_mean, n_blocks) / sifted
    h_q = 1 - 2 * _h2(qber)
    secret = np.maximum(np.floor(sifted * h_q), 0)
    return pd.DataFrame(
        {
            "block": np.arange(n_blocks),
            "qber": qber,
            "qber_z": qber,
            "qber_x": qber,
            "h_q": h_q,
            "basis_mismatch_entropy": 1.0,
            "sifted_bits": sifted,
            "secret_bits": secret,
            "loss_fraction": 0.9,
        }
    )


def kernel_args(rng, h_q, qber, key_drop):
    n_links = h_q.shape[0]
    return (
        h_q,
        qber,
        key_drop,
        rng.normal(0.8, 0.1, n_links),
        1.0 / rng.uniform(0.005, 0.02, n_links),
        rng.normal(0.4, 0.05, n_links),
        1.0 / rng.uniform(0.01, 0.2, n_links),
        rng.uniform(0.5, 0.9, n_links),
        np.full(n_links, 0.45),
        np.full(n_links, 1.5),
        0.3,
        0.5,
        0.2,
        0.7,
        1.0,
    )


def assert_twins_agree(args):
    out_c = compiled.algorithm2(*args)
    out_p = _anomaly_py.algorithm2(*args)
    for c, p in zip(out_c, out_p, strict=True):
        c, p = np.asarray(c), np.asarray(p)
        assert c.dtype == p.dtype and c.shape == p.shape
        assert c.tobytes() == p.tobytes() or np.array_equal(c, p, equal_nan=True)
    return out_c


@pytest.mark.parametrize("shape", [(1, 1), (3, 500), (17, 64), (1, 0)])
def test_twins_agree_on_random_traces(rng, shape):
    h_q = rng.normal(0.7, 0.3, shape)
    qber = rng.uniform(0.0, 0.3, shape)
    key_drop = rng.uniform(0.0, 1.0, shape)
    _score, threshold, flags = assert_twins_agree(kernel_args(rng, h_q, qber, key_drop))
    assert np.all((threshold >= 0.45) & (threshold <= 1.5))
    if flags.size:
        assert set(np.unique(flags)) <= {0, 1}


def test_twins_agree_on_adversarial_traces(rng):
    n = 400
    h_q = rng.normal(0.7, 0.3, (6, n))
    qber = rng.uniform(0.0, 0.3, (6, n))
    key_drop = rng.uniform(0.0, 1.0, (6, n))
    h_q[0, ::7] = np.nan  # scattered NaN
    qber[1, 50:60] = np.inf  # infinities, then back to finite
    qber[1, 61] = -np.inf
    h_q[2] = 1e308  # extremes: overflow to inf inside the score
    qber[2, ::3] = 1e300
    h_q[3], qber[3], key_drop[3] = 0.8, 0.01, 0.0  # constant
    qber[4, : n // 2], qber[4, n // 2 :] = 0.01, 0.25  # step change
    key_drop[4, n // 2 :] = 1.0
    qber[5] = np.where(np.arange(n) % 2 == 0, 0.0, 1e-300)  # denormal chatter
    _score, threshold, flags = assert_twins_agree(kernel_args(rng, h_q, qber, key_drop))
    assert not flags[0, ::7].any()
    assert np.isfinite(threshold).all()
    assert flags[4, n // 2 + 20 :].all()


def test_eq3_matches_the_vectorised_score(rng):
    params = QidsParams(weights=(0.2, 0.5, 0.3))
    traces = [make_trace(rng, 0.01), make_trace(rng, 0.15)]
    cal = anomaly.calibrate([make_trace(rng, 0.01)], params)
    result = anomaly.detect(traces, cal, params, impl="python")
    drop = anomaly.key_drop_ratio(anomaly.stack_traces(traces, "secret_bits"), params.key_drop_window)
    expected = anomaly.anomaly_score(
        anomaly.stack_traces(traces, "h_q"),
        anomaly.stack_traces(traces, "qber"),
        drop,
        cal.hbar_q,
        cal.qber_ref,
        params,
    )
    np.testing.assert_array_equal(result.score, expected)


def test_eq4_sign_and_cantelli_noise_probability_by_hand():
    # one link, w = (0, 1, 0): A_q = qber / qber_ref, so the scores are 1, 3, 2
    cal = Calibration(hbar_q=0.0, qber_ref=0.01, noise_mean=1.0, noise_std=0.5, n_blocks=1)
    params = QidsParams(weights=(0.0, 1.0, 0.0), eta=0.25, alpha_start=2.5, alpha_min=0.0, alpha_max=100.0)
    qber = np.array([[0.01, 0.03, 0.02]])
    out = anomaly.run_matrices(np.zeros_like(qber), qber, np.zeros_like(qber), cal, params, impl="python")
    np.testing.assert_allclose(out.score, [[1.0, 3.0, 2.0]])
    p2 = 1 / (1 + ((3.0 - 1.0) / 0.5) ** 2)
    alpha2 = 2.5 + 0.25 * (3.0 - 1.0) * (1 - p2)  # rising score raises the threshold (Eq. 4 as written)
    p3 = 1 / (1 + ((2.0 - 1.0) / 0.5) ** 2)
    alpha3 = alpha2 + 0.25 * (2.0 - 3.0) * (1 - p3)
    np.testing.assert_allclose(out.threshold, [[2.5, alpha2, alpha3]])
    # 1 < 2.5; 3 >= alpha2 = 2.97; 2 < alpha3 = 2.77
    assert out.flags.tolist() == [[False, True, False]]


def test_threshold_is_clamped_and_a_sustained_attack_is_flagged(rng):
    params = QidsParams(eta=50.0)
    cal = anomaly.calibrate([make_trace(rng, 0.01, 500)], params)
    _start, low, high = cal.thresholds(params)
    attack = pd.concat([make_trace(rng, 0.01, 100), make_trace(rng, 0.15, 100)], ignore_index=True)
    out = anomaly.detect([attack], cal, params)
    assert np.all(out.threshold >= low) and np.all(out.threshold <= high)
    assert out.threshold[0, 100] == high  # the onset jump drives Eq. (4) into the clamp
    assert out.flags[0, 110:].mean() > 0.95


def test_nan_block_is_not_flagged_and_keeps_the_threshold():
    cal = Calibration(hbar_q=0.8, qber_ref=0.01, noise_mean=0.5, noise_std=0.1, n_blocks=1)
    params = QidsParams(alpha_start=0.6, alpha_min=0.1, alpha_max=5.0)
    qber = np.array([[0.01, 0.2, np.nan, 0.2]])
    h_q = np.full_like(qber, 0.8)
    out = anomaly.run_matrices(h_q, qber, np.zeros_like(qber), cal, params, impl="python")
    assert not out.flags[0, 2]
    assert out.threshold[0, 2] == out.threshold[0, 1]
    assert out.threshold[0, 3] == out.threshold[0, 1]  # finite difference skips the NaN block (dA = 0)


def test_key_drop_ratio_matches_a_naive_window(rng):
    secret = rng.choice([0.0, 5.0, np.nan], size=(3, 40), p=[0.3, 0.6, 0.1])
    got = anomaly.key_drop_ratio(secret, 4)
    for link in range(3):
        for t in range(40):
            window = secret[link, max(0, t - 3) : t + 1]
            window = window[np.isfinite(window)]
            want = np.nan if window.size == 0 else float(np.mean(window <= 0))
            assert got[link, t] == pytest.approx(want, nan_ok=True)


def test_calibration_learns_the_clean_baselines(rng):
    clean = [make_trace(rng, 0.01, 300) for _ in range(3)]
    cal = anomaly.calibrate(clean)
    qber = np.concatenate([t["qber"] for t in clean])
    h_q = np.concatenate([t["h_q"] for t in clean])
    assert cal.qber_ref == pytest.approx(qber.mean())
    assert cal.hbar_q == pytest.approx(h_q.mean())
    assert cal.n_blocks == 900 and cal.noise_std > 0


def test_roc_separates_eavesdropping_from_clean(rng):
    cal = anomaly.calibrate([make_trace(rng, 0.01, 300)])
    clean = [make_trace(rng, 0.01) for _ in range(3)]
    eve = [make_trace(rng, 0.15) for _ in range(3)]
    roc = anomaly.roc_curve(cal, clean, eve, sigmas=np.linspace(0, 30, 16))
    assert list(roc.columns) == ["k", "alpha_start", "fpr", "tpr"]
    assert np.all(np.diff(roc["fpr"]) <= 1e-12)  # a higher threshold never flags more benign blocks here
    assert anomaly.roc_auc(roc) > 0.95


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"weights": (0.5, 0.5, 0.5)}, "weights"),
        ({"eta": -1.0}, "eta"),
        ({"key_drop_window": 0}, "window"),
        ({"block_duration": 0.0}, "block_duration"),
        ({"alpha_min": 2.0, "alpha_max": 1.0}, "alpha_min"),
    ],
)
def test_bad_parameters_are_user_errors(kwargs, field):
    with pytest.raises(UserInputError, match=field):
        QidsParams(**kwargs)


def test_trace_without_required_columns_is_rejected(rng):
    with pytest.raises(UserInputError, match="secret_bits"):
        anomaly.calibrate([make_trace(rng, 0.01).drop(columns="secret_bits")])


def test_twins_agree_on_engine_traces_through_detect(rng):
    from qesif_core.qkd.channel import preset
    from qesif_core.qkd.trace import link_trace

    streams = rng.spawn(4)
    cal = anomaly.calibrate([link_trace(preset("clean"), 30, 200_000, streams[0])])
    traces = [
        link_trace(preset(name), n, 200_000, s)
        for name, n, s in (
            ("clean", 30, streams[1]),
            ("noisy", 25, streams[2]),
            ("eavesdropped", 30, streams[3]),
        )
    ]
    fast = anomaly.detect(traces, cal, impl="cython")
    slow = anomaly.detect(traces, cal, impl="python")
    for a, b in ((fast.score, slow.score), (fast.threshold, slow.threshold), (fast.flags, slow.flags)):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(fast.score[1, 25:]).all() and not fast.flags[1, 25:].any()  # NaN padding
    assert fast.flags[2].mean() > 0.9 and fast.flags[0].mean() < 0.2


def test_twins_agree_with_link_baselines_on_engine_traces(rng):
    """Per-link calibration (link-baseline) on the engine: the noisy link is judged against its own noise,
    the eavesdropped one against its clean condition; compiled and pure loops agree bit for bit."""
    from dataclasses import replace

    from qesif_core.qkd.channel import preset
    from qesif_core.qkd.trace import link_trace

    streams = iter(rng.spawn(5))
    reference = anomaly.calibrate([link_trace(preset("clean"), 30, 200_000, next(streams))])
    channels = [preset("noisy"), preset("eavesdropped")]
    cals = [
        anomaly.calibrate_link(
            reference, [link_trace(replace(c, eve="none", eve_fraction=0.0), 30, 200_000, next(streams))]
        )
        for c in channels
    ]
    traces = [link_trace(c, 30, 200_000, next(streams)) for c in channels]
    fast = anomaly.detect(traces, cals, impl="cython")
    slow = anomaly.detect(traces, cals, impl="python")
    for a, b in ((fast.score, slow.score), (fast.threshold, slow.threshold), (fast.flags, slow.flags)):
        np.testing.assert_array_equal(a, b)
    assert fast.flags[0].mean() < 0.2 and fast.flags[1].mean() > 0.9


def test_twins_agree_over_random_parameters_and_degenerate_ranges():
    for seed in range(25):
        rng = np.random.default_rng(seed)
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 120)))
        h_q = rng.normal(0.5, 0.5, shape)
        qber = rng.uniform(0.0, 0.5, shape)
        key_drop = rng.uniform(0.0, 1.0, shape)
        mask = rng.random(shape) < 0.05
        qber[mask] = rng.choice([np.nan, np.inf, 0.0, 1e300], int(mask.sum()))
        low = rng.uniform(0.0, 2.0, shape[0])  # a clamp band per link
        width = rng.uniform(0.0, 3.0, shape[0])
        high = low if seed % 5 == 0 else low + width  # empty band: alpha pinned
        weights = rng.dirichlet(np.ones(3))
        args = (
            h_q, qber, key_drop,
            rng.normal(0.7, 0.1, shape[0]), 1.0 / rng.uniform(1e-6, 0.05, shape[0]),
            rng.normal(0.5, 0.2, shape[0]), 1.0 / rng.uniform(1e-9, 1.0, shape[0]),
            rng.uniform(low, high), low, high,
            *(float(w) for w in weights), float(rng.choice([0.0, 0.1, 5.0, 1e6])),
            float(rng.uniform(0.1, 10.0)),
        )  # fmt: skip
        _score, threshold, _flags = assert_twins_agree(args)
        assert np.all((threshold >= low[:, None]) & (threshold <= high[:, None]))


def test_per_link_calibrations_have_their_own_band_and_a_noisy_link_is_judged_by_its_noise(rng):
    params = QidsParams()
    reference = anomaly.calibrate([make_trace(rng, 0.01, 100)], params)
    noisy_own = anomaly.calibrate_link(reference, [make_trace(rng, 0.05, 100)], params)
    clean_own = anomaly.calibrate_link(reference, [make_trace(rng, 0.01, 100)], params)
    # the noise-free baselines are kept; only the benign score model is the link's own
    assert (noisy_own.hbar_q, noisy_own.qber_ref) == (reference.hbar_q, reference.qber_ref)
    assert noisy_own.noise_mean > reference.noise_mean + 3 * reference.noise_std
    traces = [make_trace(rng, 0.01, 40), make_trace(rng, 0.05, 40)]
    own = anomaly.detect(traces, [clean_own, noisy_own], params)
    shared = anomaly.detect(traces, reference, params)
    # a link noisy by nature (5%) is flagged throughout against the clean baseline, not against its own
    assert shared.flags[1].all() and own.flags[1].mean() < 0.1 and own.flags[0].mean() < 0.1
    # each link's threshold stays in its own band
    for link, cal in enumerate((clean_own, noisy_own)):
        _start, low, high = cal.thresholds(params)
        assert np.all((own.threshold[link] >= low) & (own.threshold[link] <= high))
    assert own.score.shape == (2, 40)
    # a link calibrated on its own noise still flags an attack on top of that noise
    attacked = pd.concat([make_trace(rng, 0.05, 20), make_trace(rng, 0.2, 40)], ignore_index=True)
    flagged = anomaly.detect([attacked], noisy_own, params).flags[0]
    assert flagged[:20].mean() < 0.1 and flagged[25:].mean() > 0.9


def test_link_baseline_calibration_needs_a_usable_trace(rng):
    reference = anomaly.calibrate([make_trace(rng, 0.01, 50)])
    with pytest.raises(UserInputError, match="baseline"):
        anomaly.calibrate_link(reference, [])
    with pytest.raises(UserInputError, match="secret_bits"):
        anomaly.calibrate_link(reference, [make_trace(rng, 0.05).drop(columns="secret_bits")])
