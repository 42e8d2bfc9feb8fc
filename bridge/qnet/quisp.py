"""QuISP for the links of a quantum network that ask for it (``source: quisp``).

A repeater link (``repeater: {segments: n}``) runs QuISP's repeater chain
(``quisp_configs/qesif_repeater.ini``, network ``QesifRepeaterChain``: n - 1 repeaters, segments of the
link's length / n, each segment's per-km channel rates from the link's channel, as
``bridge.backends.quisp.channel_rates`` makes them); a direct link runs the two-node template. QuISP's
end-to-end tomography becomes the pair state of the link's BBM92 blocks
(``bridge.backends.quisp.bell_pair_model``); the engine keeps the detection model, the attacker (applied to
the pairs in the block) and the post-processing. A repeater link's pairs per block still come
from the built-in chain rate (QuISP's tomography clock is not a pair rate: quisp_configs/README.md).

QuISP runs once per such link, before the run, without the link's attacker. When QuISP is not installed the
link runs on the built-in model instead, and says so: its description in the results reads "built-in
repeater-chain model" and the note "QuISP not installed", and a warning is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bridge.backends.quisp import (
    TEMPLATE_INI,
    QuispLaunch,
    bell_pair_model,
    channel_overrides,
    channel_rates,
    find_quisp,
    run_blocks,
)
from qesif_core.qkd.entangled import BellPairModel
from qesif_core.qnet.links import LinkModel

log = logging.getLogger(__name__)

REPEATER_INI = TEMPLATE_INI.with_name("qesif_repeater.ini")
REPEATER_CONFIG = "repeater_chain"
NOT_INSTALLED = "QuISP not installed: built-in model used"


def chain_overrides(link: LinkModel) -> dict[str, str]:
    """Ini lines for ``QesifRepeaterChain``: the number of repeaters, the segment length and every segment's
    per-km rates (the link's channel over one segment, without its attacker)."""
    segment = dataclasses.replace(
        link.channel, distance_km=link.channel.distance_km / link.segments, eve="none", eve_fraction=0.0
    )
    lines = {"*.repeaters": str(link.segments - 1), "*.segment_km": f"{segment.distance_km!r}km"}
    lines.update({f"**.{name}": repr(value) for name, value in channel_rates(segment).items()})
    return lines


def quisp_pair_state(
    link: LinkModel, rng: np.random.Generator, executable: Path, folder: Path, *, timeout_s: float = 600.0
) -> BellPairModel:
    """One QuISP run of ``link`` (its chain, or the two-node link) -> the engine's pair state."""
    benign = dataclasses.replace(link.channel, eve="none", eve_fraction=0.0)
    if link.is_repeater:
        ini, config, overrides = REPEATER_INI, REPEATER_CONFIG, chain_overrides(link)
    else:
        ini, config, overrides = TEMPLATE_INI, "clean", channel_overrides(benign)
    launch = QuispLaunch(
        executable=executable, ini=ini, config=config, run_dir=folder, seed=0, overrides=overrides
    )
    (run,) = run_blocks(launch, rng, 1, timeout_s=timeout_s)
    model = bell_pair_model(run)
    return dataclasses.replace(model, pair_rate_hz=None)  # pairs per block: the chain rate model


def attach_quisp_pair_states(
    links: Sequence[LinkModel],
    sources: Sequence[str],
    rng: np.random.Generator,
    executable: Path | None = None,
) -> tuple[list[LinkModel], dict[str, str]]:
    """The links with QuISP pair states where ``source`` is ``quisp`` and QuISP is installed; and per link
    a note for the results when QuISP was asked for but not found."""
    wanted = [i for i, source in enumerate(sources) if source == "quisp"]
    out, notes = list(links), {}
    if not wanted:
        return out, notes
    executable = executable or find_quisp()
    if executable is None:
        for i in wanted:
            notes[links[i].name] = NOT_INSTALLED
            log.warning("link %s: source quisp, but %s", links[i].name, NOT_INSTALLED)
        return out, notes
    with tempfile.TemporaryDirectory(prefix="qesif-qnet-quisp-") as folder:  # QuISP logs are large
        for i, link_rng in zip(wanted, rng.spawn(len(wanted)), strict=True):
            state = quisp_pair_state(links[i], link_rng, executable, Path(folder) / links[i].name)
            out[i] = dataclasses.replace(links[i], pair_state=state)
    return out, notes
