"""The layers: the pure domain imports nothing of the store, the worker or the API."""

from __future__ import annotations

import ast
import subprocess
import sys


def test_the_domain_imports_only_the_domain() -> None:
    """Importing every module of processors.domain loads no other processors module."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import processors.domain as domain\n"
        "for module in pkgutil.iter_modules(domain.__path__):\n"
        "    importlib.import_module('processors.domain.' + module.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('processors.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert loaded, "nothing was imported"
    assert [n for n in loaded if not n.startswith("processors.domain")] == []
