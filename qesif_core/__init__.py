"""qesif_core: the algorithms of QESIF (QKD engine, Q-IDS, hybrid stack, key management, schemes).

Pure computation: no sockets, no subprocesses, no global state. Randomness comes from one seeded
``numpy.random.Generator`` passed down by the caller.
"""

__version__ = "0.1.0"
