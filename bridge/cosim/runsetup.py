"""What both sides of a run derive identically from its spec: random streams and the flow split.

The orchestrator and a network backend may live in different processes; each builds its own generators
from the run's seed with :func:`run_streams`, so no random state crosses the bridge and the in-process and
bridged runs draw the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bridge.cache import dataset_inputs, shared_frame
from bridge.datasets import load_flows
from qesif_core.errors import UserInputError
from qesif_core.qids.flows import feature_columns, vector_keys

if TYPE_CHECKING:
    from bridge.scenario import DatasetSpec, RunSpec

_STREAMS = ("dataset", "split", "topology", "traffic", "qkd", "keys", "ids", "channel")


@dataclass(frozen=True)
class RunStreams:
    """One independent generator per concern, all spawned from the run's seed."""

    dataset: np.random.Generator
    split: np.random.Generator
    topology: np.random.Generator
    traffic: np.random.Generator
    qkd: np.random.Generator
    keys: np.random.Generator
    ids: np.random.Generator
    channel: np.random.Generator  # the built-in network's own draws (MAC streams, CoAP timers)


def run_streams(seed: int) -> RunStreams:
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    return RunStreams(*(np.random.default_rng(child) for child in children))


def prepare_flows(
    dataset: DatasetSpec, seed: int, fraction: float, streams: RunStreams
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The run's flow table and its grouped, stratified split: ``(flows, train_index, test_index)``.

    Rows with identical feature vectors form one group, and a group lies wholly in training or in test,
    so no test record has its exact copy in training. A group belongs to the attack class when any of its
    rows is an attack; each class's groups are shuffled and a share ``fraction`` (``qids.train_fraction``)
    of them goes to training. The held-out records are the ones the network replays and the Q-IDS judges.
    """
    flows = shared_frame(  # the same table for every run with this dataset entry and seed (bridge.cache)
        "flows",
        {"dataset": dataset_inputs(dataset.model_dump()), "seed": seed},
        lambda: load_flows(dataset.name, dataset.path, streams.dataset, max_rows=dataset.max_rows),
    )
    if len(flows) < 2:
        raise UserInputError(f"dataset {dataset.name!r}: needs at least 2 flow records, got {len(flows)}")
    _, group = np.unique(vector_keys(flows, feature_columns(flows)), return_inverse=True)
    group_is_attack = np.zeros(group.max() + 1, dtype=bool)
    group_is_attack[group[flows["label"].to_numpy(dtype=bool)]] = True
    train_group = np.zeros(group_is_attack.size, dtype=bool)
    for cls in (False, True):
        members = np.flatnonzero(group_is_attack == cls)
        members = members[streams.split.permutation(members.size)]
        train_group[members[: round(fraction * members.size)]] = True
    in_train = train_group[group]
    train_index, test_index = np.flatnonzero(in_train), np.flatnonzero(~in_train)
    if test_index.size == 0 or train_index.size == 0:
        raise UserInputError(
            f"qids.train_fraction {fraction} leaves no "
            f"{'test' if test_index.size == 0 else 'training'} records"
        )
    return flows, train_index, test_index


def run_flows(spec: RunSpec, streams: RunStreams) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """:func:`prepare_flows` of a run: its dataset section, seed and ``qids.train_fraction``."""
    return prepare_flows(spec.dataset, spec.seed, spec.qids.train_fraction, streams)
