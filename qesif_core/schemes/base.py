"""The security-scheme interface and its registry.

A scheme decides, for every IoT session, which key protects it (a QKD-derived key, a classical key
exchange, or a post-quantum hybrid one), which cipher protects the payloads and what extra bytes each
message carries, and it names the intrusion detector it runs. The network backend calls
:meth:`SecurityScheme.plan_session` at each session boundary and charges the costs of the plan from
:mod:`qesif_core.costs`.

One scheme *instance* serves one run: schemes may keep per-device state (for example the hysteresis of
the hybrid switch), so the backend creates it with ``get_scheme(name)(params)`` where ``params`` is the
``keys`` section of the run spec.

Schemes come from this package (``register_scheme``), from a user's Python file (:func:`load_scheme_file`)
or from the entry-point group ``qesif.schemes`` (each entry point names a ``SecurityScheme`` subclass).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from qesif_core.errors import UserInputError
from qesif_core.qids.fusion import DetectorSpec

#: Session modes: a QKD-derived key, a classical key exchange, or a classical+post-quantum hybrid one.
MODES: tuple[str, ...] = ("quantum", "classical", "pq-hybrid")

#: Key-establishment kinds a plan may name; each has a cost entry in ``qesif_core/data/costs.yaml``.
#: ``qkd-psk``: the gateway derives a session key from a QKD key (HKDF) and sends it wrapped to the device;
#: ``x25519``: ephemeral ECDH; ``x25519-mlkem768``: ECDH combined with ML-KEM-768; ``mlkem768``: KEM only.
HANDSHAKES: tuple[str, ...] = ("qkd-psk", "x25519", "x25519-mlkem768", "mlkem768")

#: Payload ciphers a plan may name (AEAD; costs per byte in ``costs.yaml``).
CIPHERS: tuple[str, ...] = ("aes-128-gcm", "aes-256-gcm")

#: Entry-point group through which installed packages contribute schemes.
ENTRY_POINT_GROUP = "qesif.schemes"

#: Modules of this package that define the built-in schemes (imported on first registry lookup).
_BUILTIN_MODULES: tuple[str, ...] = ("qesif_core.schemes.qesif", "qesif_core.schemes.baselines")


@dataclass(frozen=True)
class SessionContext:
    """What the network backend knows when a session with ``device`` through ``gateway`` starts.

    ``k_iot`` is Eq. (1) for this device and window; ``quantum_key_available`` says whether the gateway's
    key pool can deliver a QKD key now; ``link_flagged`` is the Q-IDS verdict for the gateway link;
    ``previous_mode`` is the mode of this device's previous session (None for the first).
    """

    device: int
    gateway: int
    time: float
    k_iot: float
    quantum_key_available: bool
    link_flagged: bool
    previous_mode: str | None = None


@dataclass(frozen=True)
class SessionPlan:
    """A scheme's decision for one session.

    ``q_adapt`` is the value of Eq. (5) at this session (before any smoothing), kept for the Theorem 1
    bookkeeping; ``mode`` is the mode actually used (after hysteresis, key availability and Q-IDS flags).
    ``consumes_qkd_key``: quantum mode always takes one QKD key (delivered with ``qkd-psk``); a
    ``pq-hybrid`` plan may also take one and mix it into the post-quantum exchange (both are paid for).
    """

    mode: str
    handshake: str
    cipher: str
    consumes_qkd_key: bool
    extra_bytes_per_message: int = 0
    q_adapt: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"SessionPlan.mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.handshake not in HANDSHAKES:
            known = ", ".join(HANDSHAKES)
            raise ValueError(f"SessionPlan.handshake {self.handshake!r} is not one of {known}")
        if self.cipher not in CIPHERS:
            raise ValueError(f"SessionPlan.cipher {self.cipher!r} is not one of {', '.join(CIPHERS)}")
        if self.mode == "quantum" and not self.consumes_qkd_key:
            raise ValueError("SessionPlan: quantum mode consumes a QKD key")
        if self.mode == "classical" and self.consumes_qkd_key:
            raise ValueError("SessionPlan: classical mode consumes no QKD key")
        if (self.handshake == "qkd-psk") != (self.mode == "quantum"):
            raise ValueError("SessionPlan: the qkd-psk handshake is used exactly in quantum mode")
        if self.extra_bytes_per_message < 0:
            raise ValueError("SessionPlan.extra_bytes_per_message must be >= 0")
        if self.q_adapt not in (0, 1):
            raise ValueError("SessionPlan.q_adapt is Eq. (5), 0 or 1")


class SecurityScheme:
    """Base class of a security scheme. Subclasses set the class attributes and ``plan_session``.

    ``params`` is the run's ``keys`` section (``epsilon_min``, ``hysteresis``, ...); schemes read what they
    need from it with their own defaults. A scheme that reads keys of its own lists them in ``extra_keys``
    (a scenario's ``keys`` section rejects any other unknown key).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    detector: ClassVar[DetectorSpec]
    #: The scheme's weakest non-QKD key establishment; it defines S_classical in Theorem 1's bookkeeping.
    classical_handshake: ClassVar[str] = "x25519"
    #: Keys of the ``keys`` section this scheme reads besides the common ones (``bridge.scenario.KeysSpec``).
    extra_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        raise NotImplementedError(f"{type(self).__name__} must implement plan_session")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


SchemeT = TypeVar("SchemeT", bound=type[SecurityScheme])

_REGISTRY: dict[str, type[SecurityScheme]] = {}
_BUILTINS_LOADED = False
_ENTRY_POINTS_LOADED = False


def _check_scheme_class(cls: Any, origin: str) -> type[SecurityScheme]:
    if not (isinstance(cls, type) and issubclass(cls, SecurityScheme)):
        raise UserInputError(f"{origin}: {cls!r} is not a subclass of qesif_core.schemes.SecurityScheme")
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise UserInputError(f"{origin}: scheme class {cls.__name__} has no `name`")
    if not isinstance(cls.description, str) or not cls.description.strip():
        raise UserInputError(f"{origin}: scheme {cls.name!r} has no one-line `description`")
    if not isinstance(getattr(cls, "detector", None), DetectorSpec):
        raise UserInputError(f"{origin}: scheme {cls.name!r} has no `detector` (a DetectorSpec)")
    if cls.classical_handshake not in HANDSHAKES or cls.classical_handshake == "qkd-psk":
        raise UserInputError(f"{origin}: scheme {cls.name!r} has an invalid classical_handshake")
    if cls.plan_session is SecurityScheme.plan_session:
        raise UserInputError(f"{origin}: scheme {cls.name!r} does not implement plan_session")
    return cls


def _add(cls: type[SecurityScheme], origin: str) -> None:
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise UserInputError(
            f"{origin}: scheme name {cls.name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[cls.name] = cls


def register_scheme(cls: SchemeT) -> SchemeT:
    """Class decorator: add a scheme to the registry under its ``name``."""
    _add(_check_scheme_class(cls, f"register_scheme({getattr(cls, '__name__', cls)!r})"), "register_scheme")
    return cls


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name!r} ({entry.value}) in group {ENTRY_POINT_GROUP}"
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken third-party package must not hide the built-in schemes
            raise UserInputError(f"{origin}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
        _add(_check_scheme_class(loaded, origin), origin)


def _ensure_loaded() -> None:
    _load_builtins()
    _load_entry_points()


def available_schemes() -> dict[str, type[SecurityScheme]]:
    """All known schemes (built-in, entry points, and files loaded so far), by name, sorted."""
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items()))


def get_scheme(name: str) -> type[SecurityScheme]:
    """The scheme class registered as ``name``; a clear error listing the known names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UserInputError(f"scheme: unknown scheme {name!r}; known schemes: {known}") from None


def load_scheme_file(path: str | Path) -> list[type[SecurityScheme]]:
    """Import a user's Python file and register every ``SecurityScheme`` subclass defined in it.

    Classes decorated with ``register_scheme`` are registered on import; undecorated subclasses defined
    in the file are registered too. Returns the schemes the file defines, in definition order.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserInputError(f"scheme file: {str(path)!r} is not a file")
    if file.suffix != ".py":
        raise UserInputError(f"scheme file: {str(path)!r} is not a Python (.py) file")
    _ensure_loaded()
    module_name = "qesif_user_scheme_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]
    if module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise UserInputError(f"scheme file: cannot import {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except UserInputError:
            del sys.modules[module_name]
            raise
        except Exception as exc:
            del sys.modules[module_name]
            raise UserInputError(
                f"scheme file: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    defined = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, SecurityScheme)
        and obj is not SecurityScheme
        and obj.__module__ == module_name
        and obj.name
    ]
    if not defined:
        raise UserInputError(f"scheme file: {str(path)!r} defines no SecurityScheme subclass with a name")
    for cls in defined:
        _add(_check_scheme_class(cls, f"scheme file {str(path)!r}"), f"scheme file {str(path)!r}")
    return defined


def _reset_registry_for_tests() -> Callable[[], None]:
    """Snapshot the registry and return a function that restores it (for tests that register schemes)."""
    _ensure_loaded()
    saved = dict(_REGISTRY)
    saved_modules = {name for name in sys.modules if name.startswith("qesif_user_scheme_")}

    def restore() -> None:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
        for name in [n for n in sys.modules if n.startswith("qesif_user_scheme_")]:
            if name not in saved_modules:
                del sys.modules[name]

    return restore
