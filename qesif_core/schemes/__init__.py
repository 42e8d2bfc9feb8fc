"""Security schemes: the interface, the registry, QESIF with its ablations, and the baselines."""

from qesif_core.schemes.base import (
    CIPHERS,
    ENTRY_POINT_GROUP,
    HANDSHAKES,
    MODES,
    SecurityScheme,
    SessionContext,
    SessionPlan,
    available_schemes,
    get_scheme,
    load_scheme_file,
    register_scheme,
)

__all__ = [
    "CIPHERS",
    "ENTRY_POINT_GROUP",
    "HANDSHAKES",
    "MODES",
    "SecurityScheme",
    "SessionContext",
    "SessionPlan",
    "available_schemes",
    "get_scheme",
    "load_scheme_file",
    "register_scheme",
]
