"""Scheme registry: decorator, clear errors, user files, entry points; SessionPlan validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qesif_core.errors import UserInputError
from qesif_core.qids.fusion import DetectorSpec
from qesif_core.schemes import (
    SecurityScheme,
    SessionContext,
    SessionPlan,
    available_schemes,
    base,
    get_scheme,
    load_scheme_file,
    register_scheme,
)

BUILT_IN = {"QESIF", "QESIF-QKD", "QESIF-QIDS", "QESIF-hybrid", "QRHE", "HyQuSec", "QuIDS", "QLSN"}
USER_SCHEME = textwrap.dedent(
    """
    from qesif_core.qids.fusion import DetectorSpec
    from qesif_core.schemes import SecurityScheme, SessionPlan


    class AlwaysKem(SecurityScheme):
        name = "AlwaysKem"
        description = "ML-KEM-768 every session"
        detector = DetectorSpec("naive_bayes", False, "none")

        def plan_session(self, ctx):
            return SessionPlan("pq-hybrid", "mlkem768", "aes-128-gcm", consumes_qkd_key=False)
    """
)


@pytest.fixture
def registry():
    restore = base._reset_registry_for_tests()
    yield
    restore()


def test_built_in_schemes_are_registered():
    assert set(available_schemes()) >= BUILT_IN


def test_unknown_scheme_name_is_a_clear_error_listing_known_names():
    with pytest.raises(UserInputError) as info:
        get_scheme("QESIF2")
    message = str(info.value)
    assert "'QESIF2'" in message
    assert all(name in message for name in BUILT_IN)


def test_decorator_registers_and_rejects_duplicates_and_incomplete_classes(registry):
    @register_scheme
    class Mine(SecurityScheme):
        name = "Mine"
        description = "mine"
        detector = DetectorSpec("random_forest", False, "none")

        def plan_session(self, ctx):
            return SessionPlan("classical", "x25519", "aes-128-gcm", consumes_qkd_key=False)

    assert get_scheme("Mine") is Mine
    with pytest.raises(UserInputError, match="already registered"):

        @register_scheme
        class Impostor(Mine):
            name = "QESIF"

    with pytest.raises(UserInputError, match="does not implement plan_session"):

        @register_scheme
        class Lazy(SecurityScheme):
            name = "Lazy"
            description = "no plan"
            detector = DetectorSpec("random_forest", False, "none")

    with pytest.raises(UserInputError, match="no `detector`"):

        @register_scheme
        class Blind(SecurityScheme):
            name = "Blind"
            description = "no detector"

            def plan_session(self, ctx):
                raise AssertionError


def test_load_scheme_file_registers_a_users_scheme(registry, tmp_path: Path):
    path = tmp_path / "always_kem.py"
    path.write_text(USER_SCHEME)
    loaded = load_scheme_file(path)
    assert [cls.name for cls in loaded] == ["AlwaysKem"]
    scheme = get_scheme("AlwaysKem")()
    plan = scheme.plan_session(SessionContext(1, 0, 0.0, 2.0, True, False))
    assert plan.handshake == "mlkem768"
    assert load_scheme_file(path) == loaded  # loading twice is harmless


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x = 1\n", "defines no SecurityScheme"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_bad_scheme_files_are_user_errors_naming_the_file(registry, tmp_path: Path, content, message):
    path = tmp_path / "bad.py"
    path.write_text(content)
    with pytest.raises(UserInputError) as info:
        load_scheme_file(path)
    assert message in str(info.value) and "bad.py" in str(info.value)


def test_missing_or_non_python_scheme_file(registry, tmp_path: Path):
    with pytest.raises(UserInputError, match="is not a file"):
        load_scheme_file(tmp_path / "nope.py")
    other = tmp_path / "scheme.txt"
    other.write_text(USER_SCHEME)
    with pytest.raises(UserInputError, match=r"not a Python \(\.py\) file"):
        load_scheme_file(other)


def test_entry_point_schemes_are_loaded(registry, monkeypatch):
    class FromPackage(SecurityScheme):
        name = "FromPackage"
        description = "contributed by an installed package"
        detector = DetectorSpec("decision_tree", False, "none")

        def plan_session(self, ctx):
            return SessionPlan("classical", "x25519", "aes-128-gcm", consumes_qkd_key=False)

    class FakeEntryPoint:
        name, value = "FromPackage", "pkg:FromPackage"

        def load(self):
            return FromPackage

    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [FakeEntryPoint()]

    monkeypatch.setattr(base, "entry_points", fake_entry_points)
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    assert get_scheme("FromPackage") is FromPackage
    assert calls == ["qesif.schemes"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "teleport", "handshake": "x25519", "cipher": "aes-128-gcm", "consumes_qkd_key": False},
        {"mode": "classical", "handshake": "rsa", "cipher": "aes-128-gcm", "consumes_qkd_key": False},
        {"mode": "classical", "handshake": "x25519", "cipher": "des", "consumes_qkd_key": False},
        {"mode": "quantum", "handshake": "qkd-psk", "cipher": "aes-128-gcm", "consumes_qkd_key": False},
        {"mode": "classical", "handshake": "x25519", "cipher": "aes-128-gcm", "consumes_qkd_key": True},
        {"mode": "classical", "handshake": "qkd-psk", "cipher": "aes-128-gcm", "consumes_qkd_key": False},
        {"mode": "quantum", "handshake": "x25519", "cipher": "aes-128-gcm", "consumes_qkd_key": True},
    ],
)
def test_inconsistent_plans_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SessionPlan(**kwargs)
