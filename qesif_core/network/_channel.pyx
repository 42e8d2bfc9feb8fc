# The compiled twin of ``qesif_core.network._channel_py``: the same source, typed by its ``cython``
# annotations (pure-Python mode), so the two cannot drift apart; tests check that they agree bit for bit.
include "_channel_py.py"
