"""The scenario section ``quantum_network:``: schema, checks and resolution into a run spec.

Absent, a run keeps the paper's design (one QKD link per gateway). Present, the run is a network run
(``bridge.qnet.run``). Fields (docs/qkd-network.md has the long form)::

    quantum_network:
      nodes:                      # name, zone, role: gateway | relay | control_centre (exactly one)
        - {name: cc, zone: centre, role: control_centre}
        - {name: gw-n1, zone: north, role: gateway}
      links:                      # a, b, distance_km; optional name, channel, protocol, pulses_per_block,
        - {a: cc, b: gw-n1, distance_km: 12}          # source (builtin | quisp), repeater, eve
        - {a: r-n, b: r-s, distance_km: 40, repeater: {segments: 2}, source: quisp}
        - {a: gw-n1, b: r-n, distance_km: 6, eve: {mode: intercept-resend, fraction: 0.56,
                                                   start_s: 300, end_s: 600}}
      key_bits: 256               # size of link keys and end-to-end keys
      pool_capacity: 1000         # keys per link store
      key_lifetime_s: 3600
      routing: {policies: [adaptive, static], depletion_weight: 1.0}
      monitor: {source: gw-n1, target: cc}            # the pair whose key availability is recorded

A link's ``channel`` is a preset name or ``{name: preset, <ChannelParams overrides>}`` (default: the run's
channel), always at the link's ``distance_km``; ``protocol`` and ``pulses_per_block`` default to the run's
``qkd`` section, ``source`` to ``qkd.source``. Every mistake names the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from qesif_core.errors import UserInputError
from qesif_core.qkd.bb84 import check_pulses
from qesif_core.qkd.channel import EAVESDROPPED_FRACTION
from qesif_core.qnet.links import AttackWindow
from qesif_core.qnet.repeater import DEFAULT_MEMORIES
from qesif_core.qnet.routing import ROUTING_POLICIES
from qesif_core.qnet.topology import ROLES, Link, Node, Topology

SECTION = "quantum_network"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NodeSpec(_Strict):
    name: str
    zone: str
    role: Literal["gateway", "relay", "control_centre"] = "relay"


class RepeaterSpec(_Strict):
    segments: int = Field(ge=2, le=64, description="memory-to-memory segments (repeaters = segments - 1)")
    memories: PositiveInt = Field(DEFAULT_MEMORIES, le=10_000, description="memories per segment end")


class EveSpec(_Strict):
    mode: Literal["intercept-resend", "pns"] = "intercept-resend"
    fraction: float = Field(EAVESDROPPED_FRACTION, gt=0.0, le=1.0)
    start_s: float = Field(ge=0.0)
    end_s: float


class LinkSpec(_Strict):
    a: str
    b: str
    distance_km: float
    name: str | None = None
    channel: str | dict[str, Any] | None = None
    protocol: Literal["bb84", "bbm92"] | None = None
    pulses_per_block: PositiveInt | None = None
    source: Literal["builtin", "quisp"] | None = None
    repeater: RepeaterSpec | None = None
    eve: EveSpec | None = None


class RoutingSpec(_Strict):
    policies: list[Literal["adaptive", "static"]] = Field(default_factory=lambda: ["adaptive"], min_length=1)
    depletion_weight: float = Field(1.0, ge=0.0)

    @field_validator("policies")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each policy at most once (known: {', '.join(ROUTING_POLICIES)})")
        return value


class MonitorSpec(_Strict):
    source: str
    target: str


class QuantumNetworkSpec(_Strict):
    nodes: list[NodeSpec] = Field(min_length=2)
    links: list[LinkSpec] = Field(min_length=1)
    key_bits: int = Field(256, ge=64, le=4096, multiple_of=8)
    pool_capacity: PositiveInt = Field(1000, le=10_000_000)
    key_lifetime_s: float = Field(3600.0, gt=0.0)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    monitor: MonitorSpec | None = None


def _parse(source: str, section: Any) -> QuantumNetworkSpec:
    from bridge.scenario import _validation_message

    if not isinstance(section, Mapping):
        raise UserInputError(f"{source}: field '{SECTION}': expected a mapping (got {section!r})")
    try:
        return QuantumNetworkSpec.model_validate(dict(section))
    except ValidationError as exc:
        raise UserInputError(_validation_message(source, exc, SECTION, QuantumNetworkSpec)) from None


def with_defaults(source: str, section: Any) -> dict[str, Any]:
    """The section with the schema's defaults filled in (the form sweeps apply to; resolved per run)."""
    return _parse(source, section).model_dump()


def link_name(link: LinkSpec) -> str:
    return link.name if link.name is not None else f"{link.a}--{link.b}"


def _topology(source: str, spec: QuantumNetworkSpec) -> Topology:
    nodes = [Node(n.name, n.zone, n.role) for n in spec.nodes]
    links = [
        Link(link_name(ln), ln.a, ln.b, ln.distance_km, ln.repeater.segments if ln.repeater else 1)
        for ln in spec.links
    ]
    try:
        topology = Topology(nodes, links, SECTION)
        centre = topology.control_centre
        pairs = [
            (node.name, centre, f"{SECTION}.nodes[{i}]")
            for i, node in enumerate(spec.nodes)
            if node.role == "gateway"
        ]
        if spec.monitor is not None:
            pairs.append((spec.monitor.source, spec.monitor.target, f"{SECTION}.monitor"))
            if spec.monitor.source == spec.monitor.target:
                raise UserInputError(f"field '{SECTION}.monitor': source and target must differ")
        topology.require_connected(pairs)
    except UserInputError as exc:
        raise UserInputError(f"{source}: {exc}") from None
    if not topology.gateways:
        raise UserInputError(
            f"{source}: field '{SECTION}.nodes': no node has role gateway ({', '.join(ROLES)})"
        )
    return topology


def check_section(source: str, section: Any, network: Mapping[str, Any], backend: str) -> Topology:
    """Schema, topology and connectivity checks that do not depend on the run's channel."""
    spec = _parse(source, section)
    topology = _topology(source, spec)
    if backend != "builtin":
        raise UserInputError(
            f"{source}: field 'backend': a quantum_network run uses the built-in session model "
            f"(got backend {backend!r})"
        )
    if network["gateways"] != len(topology.gateways):
        raise UserInputError(
            f"{source}: field 'network.gateways': the quantum network has {len(topology.gateways)} gateway "
            f"nodes, so IoT devices attach to {len(topology.gateways)} gateways (got {network['gateways']})"
        )
    for j, link in enumerate(spec.links):
        if link.eve is not None:
            try:
                AttackWindow(link.eve.mode, link.eve.fraction, link.eve.start_s, link.eve.end_s)
            except UserInputError as exc:
                raise UserInputError(f"{source}: field '{SECTION}.links[{j}].eve': {exc}") from None
    return topology


def _link_channel(source: str, where: str, link: LinkSpec, run_channel: Mapping[str, Any]) -> dict[str, Any]:
    from bridge.scenario import resolve_channel

    raw = link.channel
    if raw is None:
        raw = dict(run_channel)
    elif isinstance(raw, str):
        raw = {"name": raw}
    else:
        raw = dict(raw)
        if "name" not in raw:
            raise UserInputError(f"{source}: field '{where}.channel.name': required field is missing")
    if "distance_km" in raw and link.channel is not None and raw["distance_km"] != link.distance_km:
        raise UserInputError(
            f"{source}: field '{where}.channel.distance_km': the link's length is {where}.distance_km "
            f"({link.distance_km!r}); leave it out of the channel (got {raw['distance_km']!r})"
        )
    raw["distance_km"] = link.distance_km
    return resolve_channel(source, f"{where}.channel", raw)


def resolve_section(
    source: str,
    section: Any,
    *,
    channel: Mapping[str, Any],
    qkd: Mapping[str, Any],
    network: Mapping[str, Any],
    backend: str,
) -> dict[str, Any]:
    """The section of one run spec, every default filled in (idempotent: a resolved section resolves to
    itself). ``channel`` and ``qkd`` are the run's, the defaults of each link."""
    check_section(source, section, network, backend)
    spec = _parse(source, section)
    links = []
    for j, link in enumerate(spec.links):
        where = f"{SECTION}.links[{j}]"
        if not math.isfinite(link.distance_km) or link.distance_km <= 0:
            raise UserInputError(
                f"{source}: field '{where}.distance_km': must be > 0 km (got {link.distance_km!r})"
            )
        link_source = link.source or qkd.get("source", "builtin")
        protocol = link.protocol or ("bbm92" if link.repeater or link_source == "quisp" else qkd["protocol"])
        if (link.repeater is not None or link_source == "quisp") and protocol != "bbm92":
            what = "a repeater link" if link.repeater is not None else "source quisp"
            raise UserInputError(
                f"{source}: field '{where}.protocol': {what} distributes entangled pairs: protocol bbm92 "
                f"(got {protocol!r})"
            )
        pulses = link.pulses_per_block or qkd.get("pulses_per_block")  # None: qkd.source_rate_hz x round
        if pulses is not None:
            try:
                check_pulses(pulses, f"field '{where}.pulses_per_block'")
            except UserInputError as exc:
                raise UserInputError(f"{source}: {exc}") from None
        resolved_channel = _link_channel(source, where, link, channel)
        if link.eve is not None and link.eve.mode == "pns" and protocol == "bbm92":
            raise UserInputError(
                f"{source}: field '{where}.eve.mode': pns attacks weak coherent pulses (bb84), not pairs"
            )
        links.append(
            {
                "name": link_name(link),
                "a": link.a,
                "b": link.b,
                "distance_km": link.distance_km,
                "channel": resolved_channel,
                "protocol": protocol,
                "pulses_per_block": pulses,
                "source": link_source,
                "repeater": link.repeater.model_dump() if link.repeater else None,
                "eve": link.eve.model_dump() if link.eve else None,
            }
        )
    gateways = [n.name for n in spec.nodes if n.role == "gateway"]
    centre = next(n.name for n in spec.nodes if n.role == "control_centre")
    monitor = spec.monitor.model_dump() if spec.monitor else {"source": gateways[0], "target": centre}
    return {
        "nodes": [n.model_dump() for n in spec.nodes],
        "links": links,
        "key_bits": spec.key_bits,
        "pool_capacity": spec.pool_capacity,
        "key_lifetime_s": spec.key_lifetime_s,
        "routing": spec.routing.model_dump(),
        "monitor": monitor,
    }
