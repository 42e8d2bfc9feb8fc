import sys
import types

import pytest

from qesif_core import _native


@pytest.fixture
def twin_modules(monkeypatch):
    pure = types.ModuleType("qesif_twin_pure")
    monkeypatch.setitem(sys.modules, "qesif_twin_pure", pure)
    return pure


def test_python_selects_the_twin(twin_modules):
    assert _native.load("qesif_no_such_compiled", "qesif_twin_pure", impl="python") is twin_modules


def test_auto_falls_back_with_a_warning(twin_modules):
    with pytest.warns(RuntimeWarning, match="not built"):
        assert _native.load("qesif_no_such_compiled", "qesif_twin_pure", impl="auto") is twin_modules


def test_cython_without_a_build_is_a_clear_error(twin_modules):
    with pytest.raises(_native.NativeExtensionMissing, match="make build"):
        _native.load("qesif_no_such_compiled", "qesif_twin_pure", impl="cython")


def test_environment_switch_is_validated(monkeypatch):
    monkeypatch.setenv(_native.IMPL_ENV, "fortran")
    with pytest.raises(ValueError, match="QESIF_IMPL"):
        _native.implementation()
    monkeypatch.setenv(_native.IMPL_ENV, "Python")
    assert _native.implementation() == "python"
