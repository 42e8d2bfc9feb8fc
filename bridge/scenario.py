"""Scenario files: schema, validation and expansion into fully resolved runs.

A scenario YAML names the grid of an experiment (datasets x channel conditions x schemes x seeds, plus
sweeps over any parameter by its dotted path) and the parameters shared by all its runs. Defaults follow
the paper's Table 2 (100 devices, 10 gateways, exponential traffic with a 100 ms mean inter-arrival time,
MQTT and CoAP, 100 rounds) and ``docs/interpretations.md`` (channel presets are physical settings).

Every section is strict: a key that no part of the project reads is an error naming it and the nearest
valid key (``difflib``). The valid keys come from each section's model: the pydantic models below (a
field added to one is valid at once), ``KeyPolicy`` and ``HysteresisParams`` for ``keys`` (plus
``session_rounds``, ``energy_budget_j`` and the keys the registered schemes declare in ``extra_keys``),
``ChannelParams`` for channel overrides and the cost table (``qesif_core/data/costs.yaml``) for ``costs``.

Each run is a JSON-serialisable spec dict (the contract of ``bridge.cosim.orchestrator.run_once`` in
``docs/design.md``) with a stable key: a hash of the resolved spec, which includes the seed. The key does
not depend on the order of runs, the scenario file's name or formatting, so a re-run batch recognises
finished runs. Every user mistake becomes a :class:`~qesif_core.errors.UserInputError` that names the file,
the field and the bad value.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from bridge.provenance import code_fingerprint
from qesif_core.entropy_keys import KeyPolicy
from qesif_core.errors import UserInputError
from qesif_core.hybrid import HysteresisParams
from qesif_core.qids.anomaly import QidsParams
from qesif_core.qids.fusion import BOOSTED_FLOW_THRESHOLD, FLOW_THRESHOLD
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams

DATASETS = ("ton_iot", "edge_iiotset", "bot_iot")
CHANNELS = ("clean", "noisy", "eavesdropped")
BACKENDS = ("builtin", "omnetpp")
KEY_LENGTH = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatasetSpec(_Strict):
    """A dataset that drives device traffic and carries the ground truth."""

    name: Literal["ton_iot", "edge_iiotset", "bot_iot"]
    path: str | None = Field(None, description="CSV of the dataset; null: the synthetic generator")
    max_rows: PositiveInt | None = Field(None, description="cap on records read (null: all)")


class ScenarioDataset(DatasetSpec):
    """A dataset entry of a scenario file: a relative ``path`` is taken from the scenario file's folder;
    ``if_missing: synthetic`` runs on the schema-compatible generator when the file is absent (the run's
    ``synthetic`` attribute then says so) instead of failing validation."""

    if_missing: Literal["error", "synthetic"] = "error"


class ChannelSpec(BaseModel):
    """A channel preset (``clean``, ``noisy``, ``eavesdropped``) with optional ChannelParams overrides."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str


class NetworkSpec(_Strict):
    """Table 2: the IoT network of one scenario."""

    devices: PositiveInt = 100
    gateways: PositiveInt = 10
    mean_interarrival_s: PositiveFloat = 0.1
    mqtt_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of MQTT devices; the rest CoAP")
    access: Literal["802.15.4", "wifi"] = "802.15.4"
    mqtt_qos: int = Field(1, ge=0, le=1, description="MQTT-SN PUBLISH QoS: 1 acknowledged and retried, 0 not")
    coap_confirmable: bool = Field(True, description="CoAP CON requests (ACK, retransmission); false: NON")
    device_queue: PositiveInt = Field(8, description="messages a device buffers behind the one under way")
    mqtt_retry_s: PositiveFloat = Field(10.0, description="MQTT-SN T_retry: a QoS 1 PUBLISH's retry timer")
    payload_bytes: PositiveInt | None = Field(
        None,
        description="application payload of every message; null: each message carries its flow record's "
        "mean bytes per packet, clipped to 16-256 B",
    )


class QkdSpec(_Strict):
    """QKD link model: protocol, block size (one block per round), source intensities, reconciliation frame
    (docs/qkd.md)."""

    protocol: Literal["bb84", "bbm92"] = "bb84"
    pulses_per_block: PositiveInt | None = Field(
        None, description="pulses (pairs) per block; null: source_rate_hz x round_duration_s"
    )
    source_rate_hz: PositiveFloat = Field(1e9, description="pulses (pairs) the source emits per second")
    intensities: Literal["optimise", "fixed"] = Field(
        "optimise",
        description="bb84 signal/decoy intensities: chosen per link for its honest settings and block size "
        "(optimise), or the channel's mu_signal/mu_decoy (fixed)",
    )
    frame_bits: PositiveInt = Field(
        16384,
        description="raw key bits per block that really go through Cascade, the tag and privacy "
        "amplification (qesif_core.qkd.session.DEFAULT_FRAME_BITS)",
    )
    source: Literal["builtin", "quisp"] = Field(
        "builtin",
        description="who models the links' pair states: the engine (builtin) or QuISP runs of the channel "
        "done before the run (quisp, bbm92 only; docs/simulators.md)",
    )


class QidsSpec(_Strict):
    """Q-IDS parameters (docs/qids.md): Algorithm 2's calibration and Eq. (3)/(4) settings, the detector's
    training split. Algorithm 2's defaults are taken from ``qesif_core.qids.anomaly.QidsParams``."""

    calibration: Literal["link-baseline", "noise-free"] = Field(
        "link-baseline",
        description="benign-noise model of Algorithm 2: each link's commissioning blocks without the "
        "attacker (link-baseline), or the noise-free trials (noise-free, paper-literal)",
    )
    calibration_blocks: int = Field(
        20, ge=2, description="noise-free blocks, and commissioning blocks per link"
    )
    train_fraction: float = Field(0.7, gt=0.0, lt=1.0, description="stratified detector training split")
    boosted_flow_threshold: float = Field(
        BOOSTED_FLOW_THRESHOLD,
        gt=0.0,
        le=FLOW_THRESHOLD,
        description="the boost fusion rule's flow threshold on links Algorithm 2 flags (docs/qids.md)",
    )
    weights: list[float] = Field(
        default_factory=lambda: list(QidsParams.weights), min_length=3, max_length=3, description="Eq. (3)"
    )
    eta: float = Field(QidsParams.eta, ge=0.0, description="Eq. (4) learning rate")
    key_drop_window: PositiveInt = QidsParams.key_drop_window
    block_duration: PositiveFloat = QidsParams.block_duration
    alpha_start_sigmas: float = QidsParams.alpha_start_sigmas
    alpha_min_sigmas: float = QidsParams.alpha_min_sigmas
    alpha_max_sigmas: float = QidsParams.alpha_max_sigmas
    alpha_start: float | None = QidsParams.alpha_start
    alpha_min: float | None = QidsParams.alpha_min
    alpha_max: float | None = QidsParams.alpha_max

    @field_validator("weights")
    @classmethod
    def _weights_are_a_mix(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(w) or w < 0 for w in value) or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError("Eq. (3) weights must be three non-negative numbers summing to 1")
        return value


def _dataclass_fields_model(name: str, source: type, skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A strict pydantic model with the fields, types and defaults of a dataclass (its section's model)."""
    hints = typing.get_type_hints(source)
    fields = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(source) if f.name not in skip}
    return create_model(name, __base__=_Strict, **fields)


HysteresisSpec = _dataclass_fields_model("HysteresisSpec", HysteresisParams, skip=("epsilon_min",))
_KeyPolicySpec = _dataclass_fields_model("KeyPolicySpec", KeyPolicy)


class KeysSpec(_KeyPolicySpec):
    """The ``keys`` section: Algorithm 1's ``KeyPolicy`` fields (``epsilon_min`` is also Eq. 5's
    threshold), the schemes' ``hysteresis`` (mapping of ``HysteresisParams`` fields, or true/false),
    ``session_rounds`` and ``energy_budget_j`` (docs/design.md), and any key a registered scheme declares
    in its ``extra_keys`` (checked by :func:`check_keys`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    hysteresis: bool | HysteresisSpec | None = None
    session_rounds: PositiveInt = Field(1, description="rounds a device keeps its security session")
    energy_budget_j: PositiveFloat | None = Field(None, description="device energy budget: eta of Eq. 1")

    def settings(self) -> dict[str, Any]:
        """The keys the scenario set, as a mapping (each part that reads one applies its own default)."""
        return self.model_dump(exclude_unset=True)

    @model_validator(mode="after")
    def _values_fit_their_models(self) -> KeysSpec:
        """The values are checked by the code that reads them (Algorithm 1's policy, the hybrid switch)."""
        from qesif_core.schemes.qesif import hysteresis_from_params

        try:
            KeyPolicy(**{f: getattr(self, f) for f in _KeyPolicySpec.model_fields})
            hysteresis_from_params(self.settings())
        except (UserInputError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self


DEADLINE_HELP = (
    "wall-clock limit (s) of one run with a peer process (--bridge zmq, --peer, qesif serve, omnetpp), "
    "however busy the peer keeps the bridge; null: 600 s + 60 s per round"
)


class Scenario(_Strict):
    """One scenario file. Lists are the axes of the grid; everything else is shared by all its runs."""

    name: str = Field(min_length=1)
    description: str = ""
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [1], min_length=1)
    rounds: PositiveInt = 100
    round_duration_s: PositiveFloat = 1.0
    backend: Literal["builtin", "omnetpp"] = "builtin"
    deadline_s: PositiveFloat | None = Field(None, description=DEADLINE_HELP)
    datasets: list[ScenarioDataset] = Field(
        default_factory=lambda: [ScenarioDataset(name=n) for n in DATASETS], min_length=1
    )
    channels: list[ChannelSpec] = Field(
        default_factory=lambda: [ChannelSpec(name=n) for n in CHANNELS], min_length=1
    )
    schemes: list[str] = Field(default_factory=lambda: ["QESIF"], min_length=1)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    qkd: QkdSpec = Field(default_factory=QkdSpec)
    qids: QidsSpec = Field(default_factory=QidsSpec, description="Q-IDS parameters")
    keys: KeysSpec = Field(default_factory=KeysSpec, description="key management / hybrid parameters")
    costs: dict[str, Any] = Field(default_factory=dict, description="overrides of the default cost model")
    sweeps: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted path of a run-spec field -> values to sweep; paths joined by '+' sweep together "
        "(each value a list with one entry per path)",
    )
    quantum_network: dict[str, Any] | None = Field(
        None, description="a QKD network with trusted relays (bridge.qnet.spec); absent: one link per gateway"
    )

    @field_validator("datasets", "channels", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        """A bare name in the list stands for ``{name: ...}``."""
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("sweeps")
    @classmethod
    def _sweeps_not_empty(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in value.items():
            if not values:
                raise ValueError(f"sweep {path!r} has no values")
            width = len(path.split("+"))
            if width > 1 and any(not isinstance(v, list) or len(v) != width for v in values):
                raise ValueError(
                    f"sweep {path!r}: every value must be a list of {width} entries, one per path"
                )
        return value


ChannelSection = _dataclass_fields_model("ChannelSection", ChannelParams)


class RunChannel(ChannelSection):
    """A run's channel: its preset's name and every ``ChannelParams`` field (unset ones: the preset's)."""

    name: str

    @model_validator(mode="before")
    @classmethod
    def _preset_fills_the_rest(cls, values: Any) -> Any:
        if isinstance(values, Mapping) and values.get("name") in CHANNEL_PRESETS:
            return {**dataclasses.asdict(CHANNEL_PRESETS[values["name"]]), **values}
        return values

    @property
    def params(self) -> ChannelParams:
        return ChannelParams(**self.model_dump(exclude={"name"}))


class PeerSpec(_Strict):
    """The program that runs the network of an ``external`` run (``qesif run --peer``, ``qesif serve``)."""

    command: str | None
    transport: Literal["ipc", "tcp"]


class RunSpec(_Strict):
    """The typed, frozen spec of one run: resolved once from the scenario (:func:`expand`) or from its JSON
    form (:func:`run_spec`), and handed out section by section (``docs/design.md``, "Run specification").
    Its JSON form (:meth:`to_dict`) is what the run key, the results store, the caches and an external
    peer's ``{spec}`` file hold."""

    seed: NonNegativeInt
    rounds: PositiveInt
    round_duration_s: PositiveFloat
    backend: Literal["builtin", "omnetpp", "external"]
    deadline_s: PositiveFloat | None = None
    dataset: DatasetSpec
    channel: RunChannel
    scheme: str
    network: NetworkSpec
    qkd: QkdSpec
    qids: QidsSpec
    keys: KeysSpec
    costs: dict[str, Any]
    quantum_network: dict[str, Any] | None = None
    peer: PeerSpec | None = None

    @model_validator(mode="after")
    def _external_has_a_peer(self) -> RunSpec:
        if (self.backend == "external") != (self.peer is not None):
            raise ValueError("backend 'external' and a peer program go together")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the sections' fields in full, ``keys`` as set (each part applies its own
        defaults), ``quantum_network`` and ``peer`` only when present."""
        spec = self.model_dump(exclude={"keys"})
        spec["keys"] = self.keys.settings()
        for optional in ("quantum_network", "peer"):
            if spec[optional] is None:
                del spec[optional]
        return {name: spec[name] for name in RunSpec.model_fields if name in spec}


def run_spec(spec: RunSpec | Mapping[str, Any]) -> RunSpec:
    """The typed spec of a run spec's JSON form (a run's stored spec, or the spec a peer was sent)."""
    if isinstance(spec, RunSpec):
        return spec
    try:
        return RunSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise UserInputError(_validation_message("run spec", exc, model=RunSpec)) from None


@dataclass(frozen=True)
class Run:
    """One run of a batch: its key, its resolved spec and the swept values that distinguish it."""

    key: str
    spec: dict[str, Any]
    itervars: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Human-readable name for progress bars and failure records."""
        s = self.spec
        parts = [s["scheme"], s["dataset"]["name"], s["channel"]["name"], f"seed={s['seed']}"]
        parts += [f"{k}={v}" for k, v in self.itervars.items()]
        return " ".join(parts)


def run_key(spec: Mapping[str, Any]) -> str:
    """Stable key of a resolved spec (which includes its seed) and of the code that runs it: a SHA-256
    prefix of the code fingerprint and the spec's canonical JSON. Changed code never reuses old runs."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f"{code_fingerprint()}\n{canonical}".encode()).hexdigest()[:KEY_LENGTH]


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def nearest_valid(name: str, valid: typing.Iterable[str]) -> str:
    """``; nearest valid field: 'x'`` for the valid name closest to ``name`` (difflib)."""
    choices = sorted(valid)
    if not choices:
        return ""
    (closest,) = difflib.get_close_matches(name, choices, n=1, cutoff=0.0)
    return f"; nearest valid field: {closest!r}"


def unknown_field(where: str, value: Any, valid: typing.Iterable[str]) -> str:
    """The text of an unknown-key error: the field, its value and the nearest valid field."""
    return f"field '{where}': unknown field (value {value!r}){nearest_valid(where.rsplit('.', 1)[-1], valid)}"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``list[X]``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        model = _model_of(argument)
        if model is not None:
            return model
    return None


def _walk(
    model: type[BaseModel], loc: tuple[Any, ...], unknown_key: bool
) -> tuple[tuple[Any, ...], str | None, list[str]]:
    """Follow an error location through the models: the location without pydantic's union-member tags,
    the last tag met (None if none) and the valid field names of the section the location ends in. With
    ``unknown_key`` the last part is the unknown key itself and does not move."""
    current: type[BaseModel] | None = model
    clean: list[Any] = []
    tag = None
    for index, part in enumerate(loc):
        if unknown_key and index == len(loc) - 1:
            clean.append(part)
        elif isinstance(part, int) or current is None:
            clean.append(part)
        elif part in current.model_fields:
            clean.append(part)
            current = _model_of(current.model_fields[part].annotation)
        else:  # a union member's tag ("bool", "HysteresisSpec", ...)
            tag = str(part)
            current = current if part == current.__name__ else None
    return tuple(clean), tag, list(current.model_fields) if current is not None else []


def _validation_message(
    source: str, exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    problems = []
    for error in exc.errors():
        unknown = error["type"] == "extra_forbidden"
        loc, tag, valid = _walk(model or Scenario, tuple(error["loc"]), unknown)
        if tag is not None and tag[:1].islower() and isinstance(error["input"], Mapping):
            continue  # a scalar member of a union cannot take the mapping given: the model member explains
        where = _format_loc(loc)
        if prefix:
            where = f"{prefix}.{where}" if where != "(top level)" else prefix
        if unknown:
            problems.append(unknown_field(where, error["input"], valid))
        elif error["type"] == "missing":
            problems.append(f"field '{where}': required field is missing")
        elif error["type"] == "value_error":
            problems.append(f"field '{where}': {error['ctx']['error']} (got {error['input']!r})")
        else:
            problems.append(f"field '{where}': {error['msg']} (got {error['input']!r})")
    return f"{source}: " + "; ".join(problems)


def _channel_defaults() -> tuple[dict[str, dict[str, Any]], Any]:
    """The channel presets as plain dicts, and the ChannelParams class that validates them."""
    return {name: dataclasses.asdict(params) for name, params in CHANNEL_PRESETS.items()}, ChannelParams


def _check_number(source: str, where: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserInputError(f"{source}: field '{where}': expected true/false (got {value!r})")
    elif isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserInputError(f"{source}: field '{where}': expected a number (got {value!r})")
        if not math.isfinite(value) or value < 0:
            raise UserInputError(f"{source}: field '{where}': must be a finite number >= 0 (got {value!r})")
    elif isinstance(default, str) and not isinstance(value, str):
        raise UserInputError(f"{source}: field '{where}': expected a string (got {value!r})")


def resolve_channel(source: str, where: str, channel: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's ChannelParams fields with the user's overrides, checked by ChannelParams itself."""
    presets, params_class = _channel_defaults()
    name = channel["name"]
    if name not in presets:
        raise UserInputError(
            f"{source}: field '{where}.name': unknown channel preset {name!r}; known: {', '.join(presets)}"
        )
    resolved = dict(presets[name])
    for key, value in channel.items():
        if key == "name":
            continue
        if key not in resolved:
            raise UserInputError(
                f"{source}: {unknown_field(f'{where}.{key}', value, resolved)}; channel fields: "
                f"{', '.join(resolved)}"
            )
        _check_number(source, f"{where}.{key}", value, resolved[key])
        resolved[key] = float(value) if isinstance(resolved[key], float) else value
    try:
        params_class(**resolved)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{source}: field '{where}': invalid channel parameters: {exc}") from None
    return {"name": name, **resolved}


def resolve_dataset(source: str, index: int, dataset: ScenarioDataset) -> dict[str, Any]:
    """The run spec's dataset entry: an absolute path to an existing file, or null for synthetic."""
    resolved = {"name": dataset.name, "path": None, "max_rows": dataset.max_rows}
    if dataset.path is None:
        return resolved
    path = Path(os.path.expandvars(os.path.expanduser(dataset.path)))
    if not path.is_absolute():
        path = Path(source).resolve().parent / path
    if path.is_file():
        resolved["path"] = str(path.resolve())
    elif dataset.if_missing == "error":
        raise UserInputError(
            f"{source}: field 'datasets[{index}].path': file not found ({dataset.path!r}, i.e. {path}); "
            "`if_missing: synthetic` runs the generator instead"
        )
    else:
        print(
            f"{source}: datasets[{index}]: {dataset.path!r} not found; using the synthetic {dataset.name} "
            "generator (if_missing: synthetic)",
            file=sys.stderr,
        )
    return resolved


def _check_schemes(source: str, names: list[str]) -> None:
    from qesif_core.schemes import available_schemes

    known = available_schemes()
    for index, name in enumerate(names):
        if name not in known:
            raise UserInputError(
                f"{source}: field 'schemes[{index}]': unknown scheme {name!r}; "
                f"known schemes: {', '.join(known)}"
            )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (schema only; :func:`expand` checks schemes and channels)."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{source}: scenario file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{source}: cannot read scenario file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserInputError(f"{source}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise UserInputError(f"{source}: scenario file is empty")
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: a scenario is a mapping of fields (got {type(data).__name__})")
    return parse_scenario(data, source)


def _scheme_keys() -> set[str]:
    """Keys of the ``keys`` section that registered schemes declare (``SecurityScheme.extra_keys``)."""
    from qesif_core.schemes import available_schemes, get_scheme

    return {key for name in available_schemes() for key in get_scheme(name).extra_keys}


def check_keys(source: str, keys: Mapping[str, Any], where: str = "keys") -> dict[str, Any]:
    """Validate a ``keys`` section (:class:`KeysSpec`; unknown keys name the nearest valid one) and return
    the keys it sets (no defaults filled in: each part applies its own)."""
    try:
        spec = KeysSpec.model_validate(dict(keys))
    except ValidationError as exc:
        raise UserInputError(_validation_message(source, exc, where, KeysSpec)) from None
    known = _scheme_keys()
    for key, value in (spec.model_extra or {}).items():
        if key not in known:
            valid = [*KeysSpec.model_fields, *known]
            raise UserInputError(f"{source}: {unknown_field(f'{where}.{key}', value, valid)}")
    return spec.model_dump(exclude_unset=True)


def check_costs(source: str, costs: Mapping[str, Any], where: str = "costs") -> None:
    """Every ``costs`` override names a parameter of the cost table (dotted or nested) with a valid value."""
    from qesif_core.costs import flatten_overrides, load_cost_model

    valid = list(load_cost_model().parameters())
    try:
        names = flatten_overrides(costs)
    except AttributeError:
        raise UserInputError(f"{source}: field '{where}': expected a mapping (got {costs!r})") from None
    for name, value in names.items():
        if name not in valid:
            raise UserInputError(f"{source}: {unknown_field(f'{where}.{name}', value, valid)}")
    try:
        load_cost_model(costs)
    except UserInputError as exc:
        raise UserInputError(f"{source}: field '{where}': {exc}") from None


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a mapping (``source`` names it in errors)."""
    try:
        scenario = Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise UserInputError(_validation_message(source, exc)) from None
    check_keys(source, scenario.keys.model_dump(exclude_unset=True))
    check_costs(source, scenario.costs)
    if scenario.quantum_network is not None:
        from bridge.qnet.spec import check_section

        check_section(source, scenario.quantum_network, scenario.network.model_dump(), scenario.backend)
    return scenario


def _set_dotted(spec: dict[str, Any], path: str, value: Any, source: str) -> None:
    open_sections = ("keys", "costs")
    parts = path.split(".")
    node: Any = spec
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise UserInputError(
                f"{source}: field 'sweeps.{path}': no field {'.'.join(parts[: depth + 1])!r}"
            )
        node = node[part]
    last = parts[-1]
    if not isinstance(node, dict) or (last not in node and parts[0] not in open_sections):
        valid = node if isinstance(node, dict) else ()
        raise UserInputError(
            f"{source}: field 'sweeps.{path}': unknown field {path!r} in a run spec"
            f"{nearest_valid(last, valid)}"
        )
    node[last] = copy.deepcopy(value)


def expand(scenario: Scenario, source: str = "<scenario>", backend: str | None = None) -> list[Run]:
    """All runs of a scenario: datasets x channels x schemes x sweep values x seeds, each resolved."""
    _check_schemes(source, scenario.schemes)
    if backend is not None and backend not in BACKENDS:
        raise UserInputError(f"--backend: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    channels = [
        resolve_channel(source, f"channels[{i}]", ch.model_dump()) for i, ch in enumerate(scenario.channels)
    ]
    sweep_paths = list(scenario.sweeps)
    sweep_values = list(itertools.product(*(scenario.sweeps[p] for p in sweep_paths)))
    runs: list[Run] = []
    seen: set[str] = set()
    datasets = [resolve_dataset(source, i, d) for i, d in enumerate(scenario.datasets)]
    for dataset, channel, scheme, values, seed in itertools.product(
        datasets, channels, scenario.schemes, sweep_values, scenario.seeds
    ):
        spec: dict[str, Any] = {
            "seed": seed,
            "rounds": scenario.rounds,
            "round_duration_s": scenario.round_duration_s,
            "backend": backend or scenario.backend,
            "deadline_s": scenario.deadline_s,
            "dataset": dict(dataset),
            "channel": copy.deepcopy(channel),
            "scheme": scheme,
            "network": scenario.network.model_dump(),
            "qkd": scenario.qkd.model_dump(),
            "qids": scenario.qids.model_dump(),
            "keys": scenario.keys.model_dump(exclude_unset=True),
            "costs": copy.deepcopy(scenario.costs),
        }
        if scenario.quantum_network is not None:
            from bridge.qnet.spec import with_defaults

            spec["quantum_network"] = with_defaults(source, scenario.quantum_network)
        itervars: dict[str, Any] = {}
        for joined, value in zip(sweep_paths, values, strict=True):
            paths = joined.split("+")
            itervars.update(zip(paths, value if len(paths) > 1 else [value], strict=True))
        for path, value in itervars.items():
            if path == "channel.name":
                spec["channel"] = resolve_channel(source, f"sweeps.{path}", {"name": value})
            elif path.startswith("channel."):
                spec["channel"] = resolve_channel(source, "sweeps", {**spec["channel"], path[8:]: value})
            else:
                _set_dotted(spec, path, value, source)
        spec = _revalidate(spec, source, itervars).to_dict()
        key = run_key(spec)
        if key not in seen:
            seen.add(key)
            runs.append(Run(key=key, spec=spec, itervars=itervars))
    return runs


def _revalidate(spec: dict[str, Any], source: str, itervars: Mapping[str, Any]) -> RunSpec:
    """Check a spec after sweeps were applied and resolve it into the typed spec."""
    try:
        typed = RunSpec.model_validate(spec)
    except ValidationError as exc:
        prefix = "sweeps" if itervars else ""
        raise UserInputError(_validation_message(source, exc, prefix, RunSpec)) from None
    if itervars.get("scheme") is not None:
        _check_schemes(source, [typed.scheme])
    check_keys(source, typed.keys.settings(), "sweeps.keys" if itervars else "keys")
    check_costs(source, typed.costs, "sweeps.costs" if itervars else "costs")
    if typed.quantum_network is not None:
        from bridge.qnet.spec import resolve_section

        section = resolve_section(
            source,
            typed.quantum_network,
            channel=typed.channel.model_dump(),
            qkd=typed.qkd.model_dump(),
            network=typed.network.model_dump(),
            backend=typed.backend,
        )
        typed = typed.model_copy(update={"quantum_network": section})
    try:
        json.dumps(typed.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{source}: a run spec is not JSON-serialisable: {exc}") from None
    return typed


def load_runs(path: str | Path, backend: str | None = None) -> tuple[Scenario, list[Run]]:
    """Read, validate and expand a scenario file."""
    scenario = load_scenario(path)
    return scenario, expand(scenario, str(path), backend)
