"""Compiled extensions: the one place that lists them and sets their Cython directives.

Every extension here has a pure-Python twin selected by ``QESIF_IMPL`` (see ``qesif_core/_native.py``).
"""

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

EXTENSIONS = [
    # (module name, source); each module ``pkg._name`` has a pure twin ``pkg.name_py`` or similar.
    ("qesif_core.qids._anomaly", "qesif_core/qids/_anomaly.pyx"),
    ("qesif_core.network._channel", "qesif_core/network/_channel.pyx"),
    ("qesif_core.qkd._cascade", "qesif_core/qkd/_cascade.pyx"),
    ("qesif_core.qkd._privacy", "qesif_core/qkd/_privacy.pyx"),
]


def _extensions() -> list[Extension]:
    return [
        Extension(name, [source], include_dirs=[np.get_include()], extra_compile_args=["-O3"])
        for name, source in EXTENSIONS
    ]


setup(ext_modules=cythonize(_extensions(), compiler_directives=CYTHON_DIRECTIVES, quiet=True))
