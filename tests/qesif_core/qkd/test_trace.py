import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import CHANNEL_PRESETS
from qesif_core.qkd.trace import TRACE_COLUMNS, link_trace


def test_trace_has_contract_columns_one_row_per_block(rng):
    trace = link_trace(CHANNEL_PRESETS["eavesdropped"], 5, 10**6, rng)
    assert tuple(trace.columns) == TRACE_COLUMNS == (
        "block", "qber", "qber_z", "qber_x", "h_q", "basis_mismatch_entropy", "sifted_bits", "secret_bits",
        "loss_fraction",
    )  # fmt: skip
    assert list(trace["block"]) == [0, 1, 2, 3, 4]
    assert trace["qber"].between(0.13, 0.17).all()
    assert (trace["h_q"] < 0).all()
    assert (trace["secret_bits"] == 0).all()


def test_blocks_differ_but_seed_reproduces_the_trace():
    first = link_trace(CHANNEL_PRESETS["clean"], 4, 10**6, np.random.default_rng(9), protocol="bbm92")
    again = link_trace(CHANNEL_PRESETS["clean"], 4, 10**6, np.random.default_rng(9), protocol="bbm92")
    assert first.equals(again)
    assert first["sifted_bits"].nunique() > 1


@pytest.mark.parametrize(("n_blocks", "pulses", "name"), [(0, 10, "n_blocks"), (3, 0, "pulses_per_block")])
def test_bad_sizes_are_named(n_blocks, pulses, name, rng):
    with pytest.raises(UserInputError, match=name):
        link_trace(CHANNEL_PRESETS["clean"], n_blocks, pulses, rng)
