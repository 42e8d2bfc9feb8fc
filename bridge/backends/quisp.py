"""QuISP as the QKD trace source: launcher, output parsers and the mapping to the QKD trace.

QuISP (https://github.com/sfc-aqua/quisp, fork ngym/quisp) simulates entanglement distribution and writes its
link-tomography results as text, not as OMNeT++ scalars (``quisp/modules/QRSA/HardwareMonitor/
HardwareMonitor.cc``, ``HardwareMonitor::finish``):

- ``tomography_output_filename``: one line per end node and link,
  ``A<-->QuantumChannel{cost=..;distance=..km;fidelity=..;bellpair_per_sec=..;tomography_time=..;
  tomography_measurements=..;actual_meas=..; GOD_...}<-->B; F=..; X=..; Z=..; Y=..``;
- the same file name plus ``_dm``: per link ``A<--->B``, then ``REAL`` and ``IMAGINARY`` 4x4 blocks of the
  reconstructed density matrix (Eigen's default print);
- stdout: ``A<-->QuantumChannel{...}<-->B; Fidelity=..; Xerror=..; Zerror=..; Yerror=..`` preceded by the
  ``[INFO]\\tDM = (re,im) ...`` rows of the same matrix;
- the JSON-lines log of the Logger module (``BellPairGenerated`` events with ``simtime``).

``F, X, Z, Y`` are ``<B|rho|B>`` for the Bell states Phi+, Psi+, Phi-, Psi- (HardwareMonitor.cc builds the
projectors ``Bellpair``, ``Bellpair_X``, ``Bellpair_Z``, ``Bellpair_Y``) of a linear-inversion estimate rho
(``reconstruct_density_matrix``), so they can be negative. For a Phi+ pair a Z-basis bit differs when the
state is Psi+ or Psi-, an X-basis bit when it is Phi- or Psi-:

    QBER_Z = Xerror + Yerror = (1 - <ZZ>) / 2        QBER_X = Zerror + Yerror = (1 - <XX>) / 2

and each uses only the ZZ (resp. XX) measurements; each side picks X, Y or Z with probability 1/3
(``StationaryQubit::Random_Measurement_Basis_Selection``), so about ``actual_meas / 9`` pairs fall in each.

Two QKD traces, both with exactly the columns of ``qesif_core.qkd.trace.link_trace`` (docs/design.md) and one
row per QuISP run (= one block; a run per seed):

- :func:`engine_trace` (for the orchestrator): QuISP's measured channel drives the QKD engine. Each run
  becomes a ``BellPairModel`` (:func:`bell_pair_model`: x, y, z >= 0 keeping QuISP's QBER_Z and QBER_X,
  and the pair rate measured from the log) and one BBM92 block of ``qesif_core.qkd.session.run_block``
  (sifting, parameter estimation, Cascade, verification, privacy amplification), so every column means what
  it means for the built-in engine. The pairs are heralded pairs in memories measured ideally
  (:data:`HERALDED_PAIRS`): QuISP has already applied the fibre, so ``loss_fraction`` is 0 and loss shows
  in the pair rate instead.
- :func:`quisp_trace`: QuISP's own tomography statistics, no key distillation. ``qber_z``, ``qber_x`` as
  above, ``qber`` their mean (both bases are sampled equally often); ``h_q`` =
  ``qesif_core.entropy_keys.quantum_entropy`` (the engine's H_q = 1 - h2(e_Z^U) - h2(e_X^U)) with
  n = round(actual_meas / 9) pairs per basis and round(QBER * n) errors (QuISP prints rates, not counts;
  negative estimates count as 0); ``sifted_bits`` = 2 n; ``secret_bits`` = floor(max(0, h_q) * n) (ideal
  error correction); ``basis_mismatch_entropy`` and ``loss_fraction`` are NaN (QuISP reports neither).

Rates: ``bellpair_per_sec`` is ``tomography_measurements / tomography_time`` and the time includes the
``initial_notification_timing_buffer`` (HardwareMonitor.cc, ``Bellpair_per_sec = max_count / finish``), so it
is not the pair rate. :func:`pair_generation_rate` measures the rate from the ``BellPairGenerated`` times.

Run source (``qkd.source: quisp``): :func:`quisp_links` runs the templates once per link with the spec's
channel as per-km rates (:func:`channel_rates`) before a run, and the orchestrator uses each link's
:func:`bell_pair_model` as the pair state of its BBM92 blocks.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bridge.backends.omnetpp import RUN_CONFIG, run_logged, write_wrapper_ini
from qesif_core.entropy_keys import quantum_entropy
from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.entangled import HERALDED_PAIRS, BellPairModel, phi_plus_qbers
from qesif_core.qkd.keyrate import SecurityParams
from qesif_core.qkd.session import run_block
from qesif_core.qkd.trace import TRACE_COLUMNS

BASIS_PAIRS = 9  # 3 bases on each side, chosen uniformly and independently
QUISP_ENV = "QUISP"  # path of the quisp executable, overrides PATH lookup

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_OUTPUT_LINE = re.compile(
    r"^(?P<node>\S+)<-->QuantumChannel\{(?P<fields>[^}]*)\}<-->(?P<partner>\S+?);\s*"
    rf"F=(?P<F>{_NUMBER});\s*X=(?P<X>{_NUMBER});\s*Z=(?P<Z>{_NUMBER});\s*Y=(?P<Y>{_NUMBER})\s*$"
)
_STDOUT_LINE = re.compile(
    r"^(?P<node>\S+)<-->QuantumChannel\{(?P<fields>[^}]*)\}<-->(?P<partner>\S+?);\s*"
    rf"Fidelity=(?P<F>{_NUMBER});\s*Xerror=(?P<X>{_NUMBER});\s*Zerror=(?P<Z>{_NUMBER});\s*"
    rf"Yerror=(?P<Y>{_NUMBER})\s*$"
)
_COMPLEX = re.compile(rf"\(({_NUMBER}),({_NUMBER})\)")


# --------------------------------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class TomographyResult:
    """One link as seen from one end node (QuISP writes one per end)."""

    node: str
    partner: str
    fidelity: float
    x_error: float
    y_error: float
    z_error: float
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def qber_z(self) -> float:
        """Z-basis bit error rate of a Phi+ pair: Psi+ and Psi- flip ZZ parity."""
        return phi_plus_qbers(self.x_error, self.y_error, self.z_error)[0]

    @property
    def qber_x(self) -> float:
        """X-basis bit error rate of a Phi+ pair: Phi- and Psi- flip XX parity."""
        return phi_plus_qbers(self.x_error, self.y_error, self.z_error)[1]

    @property
    def link(self) -> tuple[str, str]:
        return tuple(sorted((self.node, self.partner)))  # type: ignore[return-value]

    def number(self, name: str) -> float:
        """A numeric field of the ``QuantumChannel{...}`` block (``distance`` without its ``km``)."""
        try:
            text = self.fields[name]
        except KeyError:
            raise UserInputError(
                f"QuISP tomography line {self.node}<-->{self.partner} has no field {name!r}"
            ) from None
        try:
            return float(text.removesuffix("km"))
        except ValueError:
            raise UserInputError(
                f"QuISP tomography field {name}={text!r} ({self.node}<-->{self.partner}) is not a number"
            ) from None


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in block.split(";"):
        part = part.strip()
        if part:
            key, sep, value = part.partition("=")
            if not sep:
                raise UserInputError(f"QuISP field {part!r} is not name=value")
            out[key.strip()] = value.strip()
    return out


def _read_text(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserInputError(f"cannot read QuISP {what} {path}: {exc.strerror}") from None


def _result(match: re.Match[str]) -> TomographyResult:
    return TomographyResult(
        node=match["node"],
        partner=match["partner"],
        fidelity=float(match["F"]),
        x_error=float(match["X"]),
        y_error=float(match["Y"]),
        z_error=float(match["Z"]),
        fields=_fields(match["fields"]),
    )


def parse_tomography_output(path: str | os.PathLike) -> list[TomographyResult]:
    """The ``tomography_output_filename`` file: one result per non-empty line, in file order.

    QuISP opens it in append mode, so repeated runs add lines; callers that need one run delete it first.
    """
    path = Path(path)
    results = []
    for lineno, line in enumerate(_read_text(path, "tomography output"), start=1):
        if not line.strip():
            continue
        match = _OUTPUT_LINE.match(line.strip())
        if match is None:
            raise UserInputError(f"{path}:{lineno}: not a QuISP tomography line: {line[:80]!r}")
        try:
            results.append(_result(match))
        except UserInputError as exc:
            raise UserInputError(f"{path}:{lineno}: {exc}") from None
    if not results:
        raise UserInputError(f"{path}: no tomography lines (did the run reach finish()?)")
    return results


def parse_density_matrices(path: str | os.PathLike) -> list[tuple[str, str, np.ndarray]]:
    """The ``_dm`` file: ``(node, partner, rho)`` per block, rho a complex 4x4 array, in file order."""
    path = Path(path)
    lines = _read_text(path, "density-matrix file")
    out: list[tuple[str, str, np.ndarray]] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        node, sep, partner = line.partition("<--->")
        if not sep:
            raise UserInputError(f"{path}:{i + 1}: expected 'Node<--->Partner', got {line[:60]!r}")
        if i + 10 >= len(lines) or lines[i + 1].strip() != "REAL" or lines[i + 6].strip() != "IMAGINARY":
            raise UserInputError(f"{path}:{i + 2}: expected REAL and IMAGINARY 4x4 blocks after {line!r}")
        try:
            real = np.array([[float(x) for x in lines[i + 2 + k].split()] for k in range(4)])
            imag = np.array([[float(x) for x in lines[i + 7 + k].split()] for k in range(4)])
        except ValueError as exc:
            raise UserInputError(f"{path}:{i + 1}: bad matrix entry in block {line!r} ({exc})") from None
        if real.shape != (4, 4) or imag.shape != (4, 4):
            raise UserInputError(f"{path}:{i + 1}: block {line!r} is not 4x4")
        out.append((node, partner, real + 1j * imag))
        i += 11
    return out


@dataclass(frozen=True)
class StdoutReport:
    """What QuISP's Cmdenv stdout carries: the tomography lines and the matrices printed before each."""

    results: list[TomographyResult]
    density_matrices: list[np.ndarray]
    run_id: str | None


def parse_stdout(path: str | os.PathLike) -> StdoutReport:
    """Cmdenv stdout of a QuISP run (``-u Cmdenv``): ``Fidelity=..`` lines and ``[INFO] DM =`` blocks."""
    path = Path(path)
    results: list[TomographyResult] = []
    matrices: list[np.ndarray] = []
    pending_rows: list[list[complex]] = []
    run_id = None
    for lineno, line in enumerate(_read_text(path, "stdout"), start=1):
        text = line.strip()
        if text.startswith("Assigned runID="):
            run_id = text.split("=", 1)[1]
        elif text.startswith("[INFO]") and ("DM =" in text or (pending_rows and len(pending_rows) < 4)):
            row = [complex(float(a), float(b)) for a, b in _COMPLEX.findall(text)]
            if "DM =" in text:
                pending_rows = []
            if len(row) != 4:
                raise UserInputError(f"{path}:{lineno}: density-matrix row needs 4 entries, has {len(row)}")
            pending_rows.append(row)
            if len(pending_rows) == 4:
                matrices.append(np.array(pending_rows))
        elif "<-->QuantumChannel{" in text:
            match = _STDOUT_LINE.match(text)
            if match is None:
                raise UserInputError(f"{path}:{lineno}: not a QuISP result line: {text[:80]!r}")
            results.append(_result(match))
    if len(matrices) != len(results):
        raise UserInputError(f"{path}: {len(results)} result lines but {len(matrices)} density matrices")
    return StdoutReport(results=results, density_matrices=matrices, run_id=run_id)


_S = 1.0 / math.sqrt(2.0)
BELL_STATES = {
    "fidelity": np.array([_S, 0, 0, _S], dtype=complex),  # Phi+ (Bellpair)
    "x_error": np.array([0, _S, _S, 0], dtype=complex),  # Psi+ (Bellpair_X)
    "z_error": np.array([_S, 0, 0, -_S], dtype=complex),  # Phi- (Bellpair_Z)
    "y_error": np.array([0, 1j * _S, -1j * _S, 0], dtype=complex),  # i Psi- (Bellpair_Y)
}


def bell_fractions(rho: np.ndarray) -> dict[str, float]:
    """F, Xerror, Zerror, Yerror from a density matrix exactly as HardwareMonitor.cc computes them:
    ``(rho.real() * P.real()).trace()`` with P the Bell projector."""
    return {name: float(np.trace(rho.real @ np.outer(v, v.conj()).real)) for name, v in BELL_STATES.items()}


@dataclass(frozen=True)
class PairRate:
    """Bell-pair generation seen at one node for one partner, from ``BellPairGenerated`` log events."""

    address: str
    partner: str
    events: int
    first_time_s: float
    last_time_s: float
    pairs_per_s: float


def pair_generation_rate(path: str | os.PathLike) -> dict[tuple[str, str], PairRate]:
    """Measured pair rate per (address, partner) from the JSONL log.

    Pairs arrive in batches sharing one ``simtime``; the rate is the number of events strictly before the
    last timestamp divided by (last - first), i.e. pairs per second over the observed span. NaN when the
    log holds a single timestamp for that pair of nodes.
    """
    path = Path(path)
    times: dict[tuple[str, str], list[float]] = {}
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"cannot read QuISP log {path}: {exc.strerror}") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if '"BellPairGenerated"' not in line:
                continue
            try:
                event = json.loads(line)
                key = (str(event["address"]), str(event["partner_addr"]))
                simtime = float(event["simtime"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise UserInputError(f"{path}:{lineno}: bad BellPairGenerated event ({exc})") from None
            times.setdefault(key, []).append(simtime)
    rates = {}
    for key, ts in times.items():
        arr = np.sort(np.array(ts))
        first, last = float(arr[0]), float(arr[-1])
        span = last - first
        rate = float(np.count_nonzero(arr < last) / span) if span > 0 else math.nan
        rates[key] = PairRate(key[0], key[1], len(ts), first, last, rate)
    return rates


# --------------------------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class QuispRun:
    """The parsed outputs of one QuISP run for one link (both end nodes' lines agree; the first is kept)."""

    result: TomographyResult
    density_matrix: np.ndarray | None
    pair_rates: dict[tuple[str, str], PairRate]

    @property
    def measurements(self) -> int:
        return int(self.result.number("actual_meas"))


def load_run(
    output: str | os.PathLike,
    *,
    link: tuple[str, str] | None = None,
    jsonl: str | os.PathLike | None = None,
) -> QuispRun:
    """Parse one run: the tomography ``output`` file, its ``_dm`` file when present, and the JSONL log.

    ``link`` picks a node pair (either order); by default the file must describe exactly one link.
    """
    output = Path(output)
    results = parse_tomography_output(output)
    links = {r.link for r in results}
    wanted = tuple(sorted(link)) if link is not None else None
    if wanted is None:
        if len(links) != 1:
            raise UserInputError(f"{output}: holds links {sorted(links)}; pass link=(node, partner)")
        (wanted,) = links
    chosen = [r for r in results if r.link == wanted]
    if not chosen:
        raise UserInputError(f"{output}: no tomography line for link {wanted}; has {sorted(links)}")
    if len(chosen) > 2:
        raise UserInputError(
            f"{output}: {len(chosen)} lines for link {wanted}: the file holds several runs (QuISP appends)"
        )
    result = chosen[0]
    dm_path = output.with_name(output.name + "_dm")
    rho = None
    if dm_path.exists():
        for node, partner, matrix in parse_density_matrices(dm_path):
            if (node, partner) == (result.node, result.partner):
                rho = matrix
                break
    rates = pair_generation_rate(jsonl) if jsonl is not None else {}
    return QuispRun(result=result, density_matrix=rho, pair_rates=rates)


def quisp_trace(runs: Sequence[QuispRun], *, security: SecurityParams | None = None) -> pd.DataFrame:
    """The QKD trace (columns of ``link_trace``) with one block per QuISP run, in the order given."""
    security = security or SecurityParams()
    rows = []
    for block, run in enumerate(runs):
        res = run.result
        n_basis = round(run.measurements / BASIS_PAIRS)
        if n_basis <= 0:
            raise UserInputError(f"QuISP run {block} ({res.node}<-->{res.partner}) has no measurements")
        errors_z = min(n_basis, max(0, round(res.qber_z * n_basis)))
        errors_x = min(n_basis, max(0, round(res.qber_x * n_basis)))
        h_q = quantum_entropy(errors_z, n_basis, errors_x, n_basis, security.eps_pe)
        rows.append(
            {
                "block": block,
                "qber": (res.qber_z + res.qber_x) / 2.0,
                "qber_z": res.qber_z,
                "qber_x": res.qber_x,
                "h_q": h_q,
                "basis_mismatch_entropy": math.nan,
                "sifted_bits": 2 * n_basis,
                "secret_bits": math.floor(max(0.0, h_q) * n_basis),
                "loss_fraction": math.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    return frame.astype({"block": np.int64, "sifted_bits": np.int64, "secret_bits": np.int64})


def link_pair_rate(run: QuispRun) -> float | None:
    """Measured pairs/s of the run's link: the mean of both ends' :func:`pair_generation_rate` when the log
    covers exactly one pair of nodes (a direct link); None otherwise (a repeater chain logs per hop)."""
    links = {tuple(sorted(key)) for key in run.pair_rates}
    if len(links) != 1:
        return None
    rates = [r.pairs_per_s for r in run.pair_rates.values() if math.isfinite(r.pairs_per_s)]
    return float(np.mean(rates)) if rates else None


def bell_pair_model(run: QuispRun) -> BellPairModel:
    """The QKD engine's Bell-pair model from QuISP's estimates: the Pauli model with x, y, z >= 0 that keeps
    QuISP's QBER_Z = x + y and QBER_X = z + y (y = Yerror clipped to [0, min(QBER_Z, QBER_X)]; linear
    inversion can give slightly negative weights, as in the repeater fixture), plus the measured pair rate."""
    res = run.result
    qz, qx = min(max(res.qber_z, 0.0), 1.0), min(max(res.qber_x, 0.0), 1.0)
    y = min(max(res.y_error, 0.0), qz, qx)
    return BellPairModel(x_error=qz - y, y_error=y, z_error=qx - y, pair_rate_hz=link_pair_rate(run))


def engine_trace(
    runs: Sequence[QuispRun],
    pairs_per_block: int,
    rng: np.random.Generator,
    *,
    params: ChannelParams = HERALDED_PAIRS,
    security: SecurityParams | None = None,
    cascade_variant: str = "yanetal",
) -> pd.DataFrame:
    """The QKD trace from QuISP's channel through the QKD engine: one BBM92 block (``run_block`` with
    ``bell_model``: sifting, parameter estimation, Cascade, verification, privacy amplification) of
    ``pairs_per_block`` pairs per QuISP run. Same columns and definitions as the built-in engine's trace."""
    rows = []
    for block, run in enumerate(runs):
        result = run_block(
            params,
            pairs_per_block,
            rng,
            "bbm92",
            bell_model=bell_pair_model(run),
            security=security,
            cascade_variant=cascade_variant,
        )
        figures = result.figures()
        rows.append({"block": block, **{name: figures[name] for name in TRACE_COLUMNS[1:]}})
    frame = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    return frame.astype({"block": np.int64, "sifted_bits": np.int64, "secret_bits": np.int64})


# --------------------------------------------------------------------------------------------- channel


def per_km_error_rates(
    qber_z: float, qber_x: float, distance_km: float, *, y_rate: float = 0.0, loss_rate: float = 0.0
) -> dict[str, float]:
    """QuISP ``channel_{x,y,z}_error_rate`` per km that give the wanted end-to-end QBERs over one fibre.

    QuantumChannel raises its per-km 5x5 transition matrix (I, X, Z, Y, lost) to the power of the distance
    (``quisp/channels/QuantumChannel.cc``). Its Pauli part has eigenvalues (1 - 2x - 2y - l) for the ZZ
    parity and (1 - 2z - 2y - l) for XX, so conditioned on survival QBER_Z = (1 - ((1-2x-2y-l)/(1-l))^d)/2.
    Solved for x and z at a given y and loss rate l.
    """
    if distance_km <= 0:
        raise UserInputError(f"distance_km must be > 0, got {distance_km}")
    for name, q in (("qber_z", qber_z), ("qber_x", qber_x)):
        if not 0.0 <= q < 0.5:
            raise UserInputError(f"{name} must be in [0, 0.5), got {q}")
    survive = 1.0 - loss_rate

    def solve(q: float) -> float:
        return survive * (1.0 - (1.0 - 2.0 * q) ** (1.0 / distance_km)) / 2.0 - y_rate

    x, z = solve(qber_z), solve(qber_x)
    if x < 0 or z < 0:
        raise UserInputError(f"y_rate {y_rate} alone exceeds the wanted QBER over {distance_km} km")
    return {
        "channel_x_error_rate": x,
        "channel_y_error_rate": y_rate,
        "channel_z_error_rate": z,
        "channel_loss_rate": loss_rate,
    }


def expected_qber(rates: Mapping[str, float], distance_km: float) -> tuple[float, float]:
    """(QBER_Z, QBER_X) after ``distance_km`` of a QuantumChannel with these per-km rates (inverse of
    :func:`per_km_error_rates`)."""
    x = rates.get("channel_x_error_rate", 0.0)
    y = rates.get("channel_y_error_rate", 0.0)
    z = rates.get("channel_z_error_rate", 0.0)
    loss = rates.get("channel_loss_rate", 0.0)
    survive = 1.0 - loss
    lam_zz = (1.0 - 2.0 * x - 2.0 * y - loss) / survive
    lam_xx = (1.0 - 2.0 * z - 2.0 * y - loss) / survive
    return (1.0 - lam_zz**distance_km) / 2.0, (1.0 - lam_xx**distance_km) / 2.0


def channel_rates(params: ChannelParams) -> dict[str, float]:
    """QuISP ``QuantumChannel`` per-km rates for one of the engine's channels (how quisp_configs/ was made).

    The fibre's dB/km becomes the per-km loss probability 1 - 10^(-alpha/10); the intrinsic error e_d
    becomes depolarising noise (x = y = z) with QBER e_d over the distance; an intercept-resend attacker on
    a fraction f adds X and Z flips so that both bases reach the attack's QBER 1/2 - (1 - 2 e_d)(1 - f/2)/2
    (quisp_configs/README.md). A PNS attack targets weak pulses, which QuISP's pairs are not.
    """
    if params.eve == "pns":
        raise UserInputError("channel field eve='pns' attacks weak coherent pulses; QuISP distributes pairs")
    if params.distance_km <= 0:
        raise UserInputError(f"channel field distance_km must be > 0 for QuISP (got {params.distance_km!r})")
    loss = 1.0 - 10.0 ** (-params.fibre_loss_db_per_km / 10.0)
    depolarising = (
        (1.0 - loss) * (1.0 - (1.0 - 2.0 * params.intrinsic_error) ** (1.0 / params.distance_km)) / 4
    )
    attacked = params.eve_fraction if params.eve == "intercept-resend" else 0.0
    if attacked == 0.0:
        return {
            "channel_x_error_rate": depolarising,
            "channel_y_error_rate": depolarising,
            "channel_z_error_rate": depolarising,
            "channel_loss_rate": loss,
        }
    qber = 0.5 - (1.0 - 2.0 * params.intrinsic_error) * (1.0 - attacked / 2.0) / 2.0
    return per_km_error_rates(qber, qber, params.distance_km, y_rate=depolarising, loss_rate=loss)


def channel_overrides(params: ChannelParams) -> dict[str, str]:
    """Ini lines that give the template network the fibre length and :func:`channel_rates` of ``params``."""
    lines = {"*.fiber_km": f"{params.distance_km!r}km"}
    lines.update({f"**.{name}": repr(value) for name, value in channel_rates(params).items()})
    return lines


# --------------------------------------------------------------------------------------------- launcher


def find_quisp() -> Path | None:
    """The QuISP executable: ``$QUISP`` if set, else ``quisp`` on PATH; None when absent."""
    env = os.environ.get(QUISP_ENV)
    if env:
        path = Path(env)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("quisp")
    return Path(found) if found else None


def why_no_quisp() -> str | None:
    """None when :func:`find_quisp` finds QuISP, else what is missing and how to provide it."""
    if find_quisp() is not None:
        return None
    where = os.environ.get(QUISP_ENV)
    if where:
        missing = f"${QUISP_ENV}={where} is not an executable file"
    else:
        missing = f"${QUISP_ENV} unset, no 'quisp' on PATH"
    return (
        f"QuISP not found: {missing} (set ${QUISP_ENV} to the built quisp executable, e.g. by sourcing the "
        "env.sh written by tools/build_simulators.sh; docs/simulators.md)"
    )


@dataclass(frozen=True)
class QuispLaunch:
    """One QuISP run. ``ini`` holds a config named ``config`` (see quisp_configs/); ``overrides`` are
    extra ini lines (key -> value, written verbatim) in a derived config, so they win over the template."""

    executable: Path
    ini: Path
    config: str
    run_dir: Path
    seed: int
    sim_time_limit_s: float = 20.0
    ned_paths: Sequence[Path] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def output_file(self) -> Path:
        return self.run_dir / "results" / "qesif_run.output"

    @property
    def jsonl_file(self) -> Path:
        return self.run_dir / "results" / "qesif_run-0.jsonl"


def write_run_ini(launch: QuispLaunch) -> Path:
    """The wrapper ini (``omnetpp.write_wrapper_ini``): the template's config plus the seed, this run's
    output file names and the overrides, in a derived config whose lines win."""
    lines = [
        f"seed-set = {int(launch.seed)}",
        f'**.tomography_output_filename = "{launch.output_file}"',
        "**.logger.enabled_log = true",
        f'**.logger.log_filename = "{launch.jsonl_file}"',
        *(f"{key} = {value}" for key, value in launch.overrides.items()),
    ]
    return write_wrapper_ini(launch.ini, launch.config, launch.run_dir, lines)


def quisp_argv(launch: QuispLaunch, run_ini: Path) -> list[str]:
    """Argument list for the QuISP executable (Cmdenv, express mode, seed via the wrapper ini)."""
    ned = [str(p) for p in launch.ned_paths] or [str(launch.executable.resolve().parent)]
    ned.append(str(launch.ini.resolve().parent))
    return [
        str(launch.executable),
        "-u",
        "Cmdenv",
        "--cmdenv-express-mode=true",
        "-n",
        os.pathsep.join(ned),
        "-f",
        str(run_ini),
        "-c",
        RUN_CONFIG,
        f"--sim-time-limit={launch.sim_time_limit_s}s",
        f"--result-dir={launch.run_dir / 'results'}",
    ]


@dataclass(frozen=True)
class QuispRunOutcome:
    returncode: int
    wall_time_s: float
    stdout: Path
    stderr: Path
    output: Path
    jsonl: Path


def run_quisp(launch: QuispLaunch, *, timeout_s: float = 600.0, grace_s: float = 10.0) -> QuispRunOutcome:
    """Run QuISP once in ``launch.run_dir`` and wait (``omnetpp.run_logged``: on timeout SIGTERM, wait
    ``grace_s``, SIGKILL, ``TimeoutError``). Output files QuISP appends to are deleted first, so the parsers
    see this run only. A non-zero exit raises :class:`UserInputError` quoting the end of stderr."""
    run_ini = write_run_ini(launch)
    (launch.run_dir / "results").mkdir(parents=True, exist_ok=True)
    for stale in (
        launch.output_file,
        launch.output_file.with_name(launch.output_file.name + "_dm"),
        launch.jsonl_file,
    ):
        stale.unlink(missing_ok=True)
    wall, stdout_path, stderr_path = run_logged(
        quisp_argv(launch, run_ini),
        run_dir=launch.run_dir,
        label=f"QuISP (config {launch.config})",
        timeout_s=timeout_s,
        grace_s=grace_s,
    )
    return QuispRunOutcome(0, wall, stdout_path, stderr_path, launch.output_file, launch.jsonl_file)


def seeds_for_blocks(rng: np.random.Generator, n_blocks: int) -> list[int]:
    """OMNeT++ seed-set values for ``n_blocks`` runs, drawn from the scenario's generator."""
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n_blocks)]


def run_blocks(
    launch: QuispLaunch, rng: np.random.Generator, n_blocks: int, *, timeout_s: float = 600.0
) -> list[QuispRun]:
    """``n_blocks`` QuISP runs with seeds from ``rng``, one run directory each, parsed (one per block)."""
    runs = []
    for block, seed in enumerate(seeds_for_blocks(rng, n_blocks)):
        spec = QuispLaunch(
            executable=launch.executable,
            ini=launch.ini,
            config=launch.config,
            run_dir=launch.run_dir / f"block{block:04d}",
            seed=seed,
            sim_time_limit_s=launch.sim_time_limit_s,
            ned_paths=launch.ned_paths,
            overrides=launch.overrides,
        )
        outcome = run_quisp(spec, timeout_s=timeout_s)
        runs.append(load_run(outcome.output, jsonl=outcome.jsonl if outcome.jsonl.exists() else None))
    return runs


# --------------------------------------------------------------------------------------------- run source


#: The repository's QuISP templates (quisp_configs/), next to the ``bridge`` package in the source tree.
TEMPLATE_INI = Path(__file__).resolve().parents[2] / "quisp_configs" / "qesif_links.ini"


@dataclass(frozen=True)
class QuispLinks:
    """A run's quantum links from QuISP (``qkd.source: quisp``): per link, the engine's Bell-pair model from a
    QuISP run of the run's channel (``attacked``) and of the same channel without its attacker (``benign``,
    the Q-IDS commissioning blocks), plus the engine channel for the blocks: the run's fibre, detectors and
    block size, without the attacker, whose effect is already in QuISP's pair state."""

    channel: ChannelParams
    attacked: list[BellPairModel]
    benign: list[BellPairModel]


def quisp_links(
    channel: ChannelParams,
    n_links: int,
    protocol: str,
    rng: np.random.Generator,
    *,
    executable: Path | None = None,
    timeout_s: float = 600.0,
) -> QuispLinks:
    """Run QuISP once per link (seeds from ``rng``; twice when the channel has an attacker) before a run.

    QuISP supplies the pairs' Pauli errors (tomography of its simulated fibre); the engine keeps sifting,
    parameter estimation, Cascade, verification and privacy amplification, and its own detection model.
    QuISP's pair rate is not used: the block size stays the run's (``qkd.pulses_per_block``, or
    ``qkd.source_rate_hz`` x ``round_duration_s``).
    """
    if protocol != "bbm92":
        raise UserInputError(
            f"qkd.source 'quisp' distributes entangled pairs: set qkd.protocol to bbm92 (got {protocol!r})"
        )
    executable = executable or find_quisp()
    if executable is None:
        raise UserInputError(
            f"qkd.source 'quisp': QuISP not found (set ${QUISP_ENV} to the quisp executable, "
            "or put it on PATH)"
        )
    benign_channel = replace(channel, eve="none", eve_fraction=0.0)

    def models(params: ChannelParams, folder: str) -> list[BellPairModel]:
        launch = QuispLaunch(
            executable=executable,
            ini=TEMPLATE_INI,
            config="clean",  # every channel parameter is overridden
            run_dir=Path(folder),
            seed=0,
            overrides=channel_overrides(params),
        )
        return [bell_pair_model(run) for run in run_blocks(launch, rng, n_links, timeout_s=timeout_s)]

    with tempfile.TemporaryDirectory(prefix="qesif-quisp-") as folder:  # the JSONL logs are ~50 MB per run
        benign = models(benign_channel, str(Path(folder) / "benign"))
        attacked = benign if benign_channel == channel else models(channel, str(Path(folder) / "attacked"))
    return QuispLinks(channel=benign_channel, attacked=attacked, benign=benign)
