import math

import numpy as np
import pytest

from qesif_core import _native
from qesif_core.qkd import cascade

IMPLS = ("python", "cython")


def noisy_pair(rng: np.random.Generator, n: int, qber: float) -> tuple[np.ndarray, np.ndarray]:
    """Alice's random key and Bob's copy with exactly round(n * qber) flipped bits."""
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, round(n * qber), replace=False)] ^= 1
    return alice, bob


def test_block_sizes_follow_cascade_cpp_schedules():
    n = 10_000
    assert [cascade.block_size("original", p, 0.02, n) for p in (1, 2, 3, 4)] == [37, 74, 148, 296]
    assert [cascade.block_size("yanetal", p, 0.02, n) for p in (1, 2, 3, 10)] == [40, 200, 5000, 5000]
    assert [cascade.block_size("biconf", p, 0.02, n) for p in (1, 2)] == [46, 138]
    assert cascade.block_size("original", 1, 0.0, n) == 73_000  # estimate floored at 1e-5


@pytest.mark.parametrize("variant", cascade.VARIANTS)
def test_bob_ends_with_alices_key_over_many_frames(variant):
    frames = failures = 0
    for seed in range(12):
        for qber in (0.01, 0.02, 0.05, 0.1):
            rng = np.random.default_rng([seed, round(qber * 1000)])
            alice, bob = noisy_pair(rng, 4000, qber)
            result = cascade.reconcile(alice, bob, qber, rng, variant, impl="cython")
            frames += 1
            failures += not np.array_equal(result.corrected, alice)
    # Cascade leaves residual errors in a small fraction of frames (cascade-cpp: ~0.2 % for yanetal);
    # the caller's verification hash catches them. 48 fixed frames: at most one may fail.
    assert failures <= 1, f"frame error rate {failures}/{frames}"


def test_cascading_effect_corrects_errors_no_single_pass_sees():
    # Errors at 0, 1, 4, 5: pass 1 (blocks {0..3}, {4..7}) sees two even blocks. Pass 2's blocks
    # {0,2,3,6} and {1,4,5,7} expose 0 and 5 only; 1 and 4 are found by re-checking pass 1's blocks.
    alice = np.zeros(8, dtype=np.uint8)
    bob = alice.copy()
    bob[[0, 1, 4, 5]] = 1
    second_order = np.array([0, 2, 3, 6, 1, 4, 5, 7], dtype=np.int32)
    for impl in IMPLS:
        twin = _native.load(cascade._COMPILED, cascade._PURE, impl)
        outcomes = {}
        for cascading in (False, True):
            core = twin.CascadeCore(alice, bob)
            core.add_pass(None, 4, False)
            assert core.service(cascading) == 0
            core.add_pass(second_order, 4, False)
            outcomes[cascading] = (core.service(cascading), core.corrected())
        assert outcomes[False][0] == 2 and np.array_equal(np.flatnonzero(outcomes[False][1]), [1, 4])
        assert outcomes[True][0] == 4 and np.array_equal(outcomes[True][1], alice)


def test_cascading_matters_statistically():
    rng = np.random.default_rng(7)
    residual = {False: 0, True: 0}
    for _ in range(20):
        alice, bob = noisy_pair(rng, 3000, 0.05)
        orders = [None] + [cascade.shuffle_order(3000, cascade._shuffle_seed(rng)) for _ in range(3)]
        for cascading in (False, True):
            core = cascade.CascadeCore(alice, bob)
            for number, order in enumerate(orders, start=1):
                core.add_pass(order, cascade.block_size("original", number, 0.05, 3000), False)
                core.service(cascading)
            residual[cascading] += int(np.count_nonzero(core.corrected() != alice))
    assert residual[True] == 0
    assert residual[False] > 20  # without re-checking earlier passes, errors are left behind


@pytest.mark.parametrize("variant", cascade.VARIANTS)
def test_compiled_and_pure_twins_agree_exactly(variant):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 3000))
        qber = float(rng.uniform(0.005, 0.12))
        alice = rng.integers(0, 2, n, dtype=np.uint8)
        bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
        results = [
            cascade.reconcile(alice, bob, qber, np.random.default_rng([seed, 1]), variant, impl=impl)
            for impl in IMPLS
        ]
        pure, compiled = results
        assert np.array_equal(pure.corrected, compiled.corrected)
        assert (pure.disclosed_bits, pure.parity_queries, pure.passes, pure.bits_flipped) == (
            compiled.disclosed_bits,
            compiled.parity_queries,
            compiled.passes,
            compiled.bits_flipped,
        )
        assert pure.efficiency == compiled.efficiency or (
            math.isnan(pure.efficiency) and math.isnan(compiled.efficiency)
        )


def test_shuffle_twins_give_the_same_permutation():
    from qesif_core.qkd import _cascade

    rng = np.random.default_rng(3)
    for n in (1, 2, 17, 1000):
        seed = cascade._shuffle_seed(rng)
        order = cascade.shuffle_order(n, seed)
        assert np.array_equal(order, _cascade.shuffle_order(n, seed))
        assert np.array_equal(np.sort(order), np.arange(n))
    assert not np.array_equal(order, np.arange(1000))
    assert not np.array_equal(order, cascade.shuffle_order(1000, seed + 1))


def test_shuffle_is_uniform_over_small_permutations():
    # All 6 orders of 3 positions appear equally often (chi-square, 5 dof, 0.1 % critical value 20.5).
    counts: dict[tuple[int, ...], int] = {}
    rng = np.random.default_rng(8)
    for _ in range(6000):
        key = tuple(cascade.shuffle_order(3, cascade._shuffle_seed(rng)).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6
    assert sum((c - 1000) ** 2 / 1000 for c in counts.values()) < 20.5


@pytest.mark.parametrize("impl", IMPLS)
def test_same_seed_same_result_and_seed_matters(impl):
    alice, bob = noisy_pair(np.random.default_rng(11), 2000, 0.03)
    first = cascade.reconcile(alice, bob, 0.03, np.random.default_rng(5), impl=impl)
    again = cascade.reconcile(alice, bob, 0.03, np.random.default_rng(5), impl=impl)
    other = cascade.reconcile(alice, bob, 0.03, np.random.default_rng(6), impl=impl)
    assert np.array_equal(first.corrected, again.corrected)
    assert (first.disclosed_bits, first.parity_queries) == (again.disclosed_bits, again.parity_queries)
    assert (first.disclosed_bits, first.parity_queries) != (other.disclosed_bits, other.parity_queries)


def test_efficiency_definition_and_accounting():
    rng = np.random.default_rng(2)
    alice, bob = noisy_pair(rng, 5000, 0.02)
    result = cascade.reconcile(alice, bob, 0.02, rng, "original", impl="cython")
    assert result.passes == 4
    assert result.efficiency == pytest.approx(result.disclosed_bits / (5000 * cascade.h2(100 / 5000)))
    assert 1.0 < result.efficiency < 1.4  # above the Shannon limit, near cascade-cpp's ~1.16
    assert result.bits_flipped == 100 and np.array_equal(result.corrected, alice)
    assert result.parity_queries < result.disclosed_bits  # parities travel in batches
    assert "corrected" not in repr(result)


def test_error_free_key_discloses_only_top_block_parities():
    alice = np.random.default_rng(4).integers(0, 2, 1000, dtype=np.uint8)
    result = cascade.reconcile(alice, alice.copy(), 0.02, np.random.default_rng(1), "original")
    assert math.isnan(result.efficiency)
    assert result.bits_flipped == 0 and np.array_equal(result.corrected, alice)
    top_blocks = sum(-(-1000 // cascade.block_size("original", p, 0.02, 1000)) for p in (1, 2, 3, 4))
    assert result.disclosed_bits == top_blocks


@pytest.mark.parametrize("variant", cascade.VARIANTS)
def test_tiny_keys(variant):
    for n in (1, 2, 3, 5):
        alice = np.zeros(n, dtype=np.uint8)
        bob = np.ones(n, dtype=np.uint8)  # every bit wrong: h2 = 0, efficiency undefined
        results = [
            cascade.reconcile(alice, bob, 0.3, np.random.default_rng(n), variant, impl=i) for i in IMPLS
        ]
        assert all(math.isnan(r.efficiency) for r in results)
        assert np.array_equal(results[0].corrected, results[1].corrected)
        bob[0] = 0
        if n > 1:
            assert not math.isnan(
                cascade.reconcile(alice, bob, 0.3, np.random.default_rng(0), variant).efficiency
            )


def test_empty_and_bad_inputs():
    empty = np.zeros(0, dtype=np.uint8)
    result = cascade.reconcile(empty, empty, 0.02, np.random.default_rng(0))
    assert result.corrected.size == 0 and result.disclosed_bits == 0
    bits = np.zeros(10, dtype=np.uint8)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="variant"):
        cascade.reconcile(bits, bits, 0.02, rng, "winnow")
    with pytest.raises(ValueError, match="length"):
        cascade.reconcile(bits, bits[:5], 0.02, rng)
    with pytest.raises(ValueError, match="0/1"):
        cascade.reconcile(bits + 2, bits, 0.02, rng)
    with pytest.raises(ValueError, match="qber"):
        cascade.reconcile(bits, bits, 0.7, rng)


# cascade-cpp's own study data for n = 10,000 (brunorijsman/cascade-cpp,
# study/data/papers/data__algorithm=<variant>;key_size=10000;error_rate=vary, 10,000 runs per point).
CASCADE_CPP_EFFICIENCY_N10K = {
    "original": {0.01: 1.1430, 0.02: 1.1594, 0.03: 1.1736, 0.04: 1.1832, 0.05: 1.1846},
    "yanetal": {0.01: 1.0953, 0.02: 1.0844, 0.03: 1.0780, 0.04: 1.0845, 0.05: 1.0767},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(CASCADE_CPP_EFFICIENCY_N10K))
def test_efficiency_matches_cascade_cpp(variant):
    """Mean f over 300 frames of n = 10,000 within 0.01 of cascade-cpp at Q = 1..5 %.

    cascade-cpp counts a parity again when Bob re-asks for it; this implementation does not, which
    lowers f by about 0.3 % (measured: 0.26 % of cascade-cpp-style asks are repeats at Q = 2 %).
    """
    for qber, reference in CASCADE_CPP_EFFICIENCY_N10K[variant].items():
        rng = np.random.default_rng([17, round(qber * 100)])
        efficiencies = []
        for _ in range(300):
            alice, bob = noisy_pair(rng, 10_000, qber)
            efficiencies.append(cascade.reconcile(alice, bob, qber, rng, variant, impl="cython").efficiency)
        assert abs(np.mean(efficiencies) - reference) < 0.01, (qber, np.mean(efficiencies), reference)


def _reconcile_building_every_pass(alice, bob, qber, rng, variant, impl):
    """``reconcile`` as it ran before ``run_pass``: every pass shuffled and built, then served."""
    twin = _native.load(cascade._COMPILED, cascade._PURE, impl)
    core = twin.CascadeCore(alice, bob)

    def new_pass(number, size, halves, cascading):
        order = None if number == 1 else twin.shuffle_order(alice.size, cascade._shuffle_seed(rng))
        core.add_pass(order, size, halves)
        return core.service(cascading)

    passes = cascade._run_schedule(variant, qber, alice.size, new_pass)
    return core.corrected(), core.disclosed_bits, core.parity_queries, core.bits_flipped, passes


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", cascade.VARIANTS)
def test_passes_after_the_last_error_are_accounted_as_if_built(variant, impl):
    """run_pass skips building a pass once Bob's key is Alice's: same key, counts and rng draws."""
    skipped = 0
    for seed in range(12):
        rng = np.random.default_rng([seed, 7])
        n = int(rng.integers(2, 4000))
        qber = float(rng.uniform(0.0, 0.1))
        alice = rng.integers(0, 2, n, dtype=np.uint8)
        bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
        built_rng, run_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        built = _reconcile_building_every_pass(alice, bob, qber, built_rng, variant, impl)
        result = cascade.reconcile(alice, bob, qber, run_rng, variant, impl=impl)
        assert np.array_equal(result.corrected, built[0])
        assert (result.disclosed_bits, result.parity_queries, result.bits_flipped, result.passes) == built[1:]
        assert run_rng.integers(2**62) == built_rng.integers(2**62)  # the same seeds were drawn
        skipped += np.array_equal(result.corrected, alice) and result.passes > 2
    assert skipped >= 6  # the shortcut was taken in most frames
