"""Every link's QKD block of a round, in this process or shared with one worker process.

A link's blocks depend only on its own model, its own random stream, the block's start time and how many
key bits the block is asked to materialise (the room in the link's pools, computed here each round and
sent with the request; the engine draws those extra frames from a generator of their own, so the block's
figures do not depend on it). The links can therefore be split between processes: each link's generator
lives in exactly one process and draws the same numbers in the same order wherever it lives, and the
results are the same bit for bit with one process or two.

With ``workers=2`` a forked worker owns 9 of every 16 links (its generators move there once) and runs its
blocks (and its Algorithm 2 calibration blocks) while this process runs the rest; it returns each block's
figures and, for admitted blocks, both ends' key bits packed eight to a byte. Receives are bounded
(``RECEIVE_TIMEOUT_S``), a worker that dies or reports an error fails the run, and
:meth:`BlockProducer.close` ends it (terminate, wait, kill).
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np

from qesif_core.entropy_keys import KeyPolicy
from qesif_core.qids.anomaly import Calibration, QidsParams
from qesif_core.qnet.links import LinkModel, accept_block, run_link_block
from qesif_core.qnet.monitor import calibrate_network

#: Seconds a round may take in the worker before the run fails.
RECEIVE_TIMEOUT_S = 600.0
JOIN_TIMEOUT_S = 5.0
#: Share of the links whose blocks the worker runs (the rest of a round costs this process about 1/8 of
#: the blocks' time: bench_qnet, ``NetworkRun.timings``).
WORKER_SHARE = 9 / 16


@dataclass(frozen=True)
class LinkBlock:
    """What the network needs of one block: Algorithm 2's inputs, Algorithm 1's verdict, the key bits."""

    h_q: float
    qber: float
    secret_bits: int
    accepted: bool
    admitted: bool
    key_a: np.ndarray = field(repr=False)
    key_b: np.ndarray = field(repr=False)


def _blocks(
    links: Sequence[LinkModel],
    rngs: Sequence[np.random.Generator],
    policy: KeyPolicy,
    now: float,
    wanted_bits: Sequence[int],
) -> list[tuple]:
    out = []
    for link, rng, wanted in zip(links, rngs, wanted_bits, strict=True):
        block = run_link_block(link, now, rng, wanted)
        accepted, admitted = accept_block(link.name, block, policy)
        keys = (
            (np.packbits(block.alice_key), np.packbits(block.bob_key), block.alice_key.size)
            if admitted
            else None
        )
        out.append((block.h_q, block.qber, block.secret_bits, accepted, admitted, keys))
    return out


def _unpack(row: tuple) -> LinkBlock:
    h_q, qber, secret_bits, accepted, admitted, keys = row
    if keys is None:
        empty = np.zeros(0, dtype=np.uint8)
        return LinkBlock(h_q, qber, secret_bits, accepted, admitted, empty, empty)
    packed_a, packed_b, n = keys
    return LinkBlock(
        h_q, qber, secret_bits, accepted, admitted, np.unpackbits(packed_a)[:n], np.unpackbits(packed_b)[:n]
    )


def _worker(connection: Connection, links: list[LinkModel], rngs: list, policy: KeyPolicy) -> None:
    try:
        while True:
            message = connection.recv()
            if message is None:
                return
            kind, args = message
            if kind == "blocks":
                connection.send(("ok", _blocks(links, rngs, policy, *args)))
            else:
                connection.send(("ok", calibrate_network(links, *args)))
    except Exception:  # reported to the parent, which fails the run with it
        connection.send(("error", traceback.format_exc()))


class BlockProducer:
    """The links' blocks round by round (module docstring)."""

    def __init__(
        self,
        links: Sequence[LinkModel],
        rngs: Sequence[np.random.Generator],
        policy: KeyPolicy,
        workers: int = 1,
    ) -> None:
        if workers not in (1, 2):
            raise ValueError(f"workers must be 1 or 2 (got {workers})")
        self.links = list(links)
        self.policy = policy
        self._local = list(range(len(self.links)))
        self._remote: list[int] = []
        self._rngs = list(rngs)
        self._process = None
        self._connection: Connection | None = None
        if workers == 2 and len(self.links) > 1:
            # The worker takes WORKER_SHARE of the links, spread over the list: this process also routes,
            # plans the sessions and runs Algorithm 2.
            n = len(self.links)
            self._remote = [i for i in range(n) if int((i + 1) * WORKER_SHARE) > int(i * WORKER_SHARE)]
            self._local = [i for i in range(n) if i not in set(self._remote)]
            context = multiprocessing.get_context("fork")
            self._connection, child = context.Pipe()
            self._process = context.Process(
                target=_worker,
                args=(
                    child,
                    [self.links[i] for i in self._remote],
                    [self._rngs[i] for i in self._remote],
                    policy,
                ),
                daemon=True,
            )
            self._process.start()
            child.close()

    def calibrate(
        self, params: QidsParams, blocks: int, mode: str, rngs: Sequence[np.random.Generator]
    ) -> list[Calibration]:
        """Algorithm 2's calibration of every link (``calibrate_network``), shared like the blocks."""
        if self._connection is not None:
            self._connection.send(("calibrate", (params, blocks, mode, [rngs[i] for i in self._remote])))
        local = calibrate_network(
            [self.links[i] for i in self._local], params, blocks, mode, [rngs[i] for i in self._local]
        )
        return self._merge(local, self._receive() if self._connection is not None else [])

    def produce(self, now: float, wanted_bits: Sequence[int]) -> list[LinkBlock]:
        """One block of every link, starting at ``now``; ``wanted_bits[i]``: the key bits link i's pools have
        room for (the engine materialises that many when the block has them)."""
        wanted = [int(bits) for bits in wanted_bits]
        if self._connection is not None:
            self._connection.send(("blocks", (now, [wanted[i] for i in self._remote])))
        local = _blocks(
            [self.links[i] for i in self._local],
            [self._rngs[i] for i in self._local],
            self.policy,
            now,
            [wanted[i] for i in self._local],
        )
        remote = self._receive() if self._connection is not None else []
        return [_unpack(row) for row in self._merge(local, remote)]

    def _merge(self, local: list, remote: list) -> list:
        out: list = [None] * len(self.links)
        for i, item in zip(self._local, local, strict=True):
            out[i] = item
        for i, item in zip(self._remote, remote, strict=True):
            out[i] = item
        return out

    def _receive(self) -> list[tuple]:
        assert self._connection is not None and self._process is not None
        if not self._connection.poll(RECEIVE_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"QKD block worker sent nothing for {RECEIVE_TIMEOUT_S:g} s")
        try:
            status, payload = self._connection.recv()
        except EOFError:
            code = self._process.exitcode
            self.close()
            raise RuntimeError(f"QKD block worker exited (code {code})") from None
        if status != "ok":
            self.close()
            raise RuntimeError(f"QKD block worker failed:\n{payload}")
        return payload

    def close(self) -> None:
        """End the worker (ask, then terminate, then kill)."""
        if self._process is None:
            return
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(JOIN_TIMEOUT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(JOIN_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()
        self._process = None
        self._connection = None
