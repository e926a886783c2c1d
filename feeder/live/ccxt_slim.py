"""Import ccxt with only the exchanges the feeder uses.

``import ccxt.pro`` runs three package ``__init__`` files (``ccxt``, ``ccxt.async_support``,
``ccxt.pro``) that each import every exchange class ccxt ships: about 330 modules and 75 MB
resident, of which a feeder collecting from three exchanges needs a handful.

:func:`install` puts an import hook in front of ccxt for this process. While one of those three
``__init__`` files runs, an exchange module it imports that is not in ``keep`` becomes a small
stand-in module instead of the real one. Nothing else changes:

- ``ccxt.pro.okx`` (the name the package binds) is a stand-in class; calling it imports the
  real module and returns a real instance, and the package name is rebound to the real class.
- Any import of a stand-in module from anywhere but the package ``__init__`` (another exchange
  subclassing it, ``from ccxt.async_support.okx import okx`` in user code) gets the real module.

So a kept exchange whose base class was left out (``binanceusdm`` without ``binance``) still
works; it only loads what it needs. The hook is a no-op for modules already imported and must be
installed before the first ``import ccxt`` to have any effect.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any

PACKAGES = ("ccxt", "ccxt.async_support", "ccxt.pro")
#: submodules of those packages that are not exchanges
NOT_EXCHANGES = frozenset(
    {
        "base",
        "abstract",
        "static_dependencies",
        "async_support",
        "pro",
        "prediction",
        "protobuf",
        "test",
    }
)


def _load_real(pkg: str, name: str) -> Any:
    """Replace a stand-in ``pkg.name`` with the real module; return the real exchange class."""
    fullname = f"{pkg}.{name}"
    mod = sys.modules.get(fullname)
    if mod is not None and not getattr(mod, "__squeezeflow_stub__", False):
        return getattr(mod, name)
    if pkg == "ccxt.pro":  # pro classes subclass ``ccxt.async_support.<name>`` by attribute
        _load_real("ccxt.async_support", name)
    sys.modules.pop(fullname, None)
    real = importlib.import_module(fullname)  # importer is this module: the hook lets it through
    cls = getattr(real, name)
    setattr(sys.modules[pkg], name, cls)  # the package binds the class, as ccxt's own does
    return cls


def _stand_in_class(pkg: str, name: str) -> type:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        return _load_real(pkg, name)(*args, **kwargs)

    doc = f"Not imported yet: calling it imports {pkg}.{name} (see feeder.live.ccxt_slim)."
    return type(name, (), {"__new__": __new__, "__doc__": doc, "__module__": f"{pkg}.{name}"})


class _StubLoader(importlib.abc.Loader):
    def __init__(self, pkg: str, name: str) -> None:
        self.pkg, self.name = pkg, name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        pkg, name = self.pkg, self.name
        stand_in = _stand_in_class(pkg, name)

        def __getattr__(attr: str) -> Any:  # noqa: N807
            if attr.startswith("__"):  # __path__, __file__...: the import system probing
                raise AttributeError(attr)
            caller = sys._getframe(1).f_globals.get("__name__")  # noqa: SLF001
            if attr == name and caller == pkg:
                return stand_in  # the package __init__ binding its name
            _load_real(pkg, name)  # anyone else gets the real module
            return getattr(sys.modules[f"{pkg}.{name}"], attr)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__squeezeflow_stub__ = True  # type: ignore[attr-defined]


class SlimFinder(importlib.abc.MetaPathFinder):
    def __init__(self, keep: Iterable[str]) -> None:
        self.keep = frozenset(keep)
        self.skipped: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        pkg, _, name = fullname.rpartition(".")
        if pkg not in PACKAGES or name in self.keep or name in NOT_EXCHANGES:
            return None
        if not _imported_by_package_init(pkg):
            return None
        self.skipped.add(fullname)
        return importlib.util.spec_from_loader(fullname, _StubLoader(pkg, name))


def _imported_by_package_init(pkg: str) -> bool:
    """Is the frame doing this import the ``__init__`` of ``pkg``?"""
    f = sys._getframe(2)  # noqa: SLF001  (1 is find_spec)
    while f is not None:
        code = f.f_code.co_filename
        if not code.startswith("<frozen importlib"):
            return bool(f.f_globals.get("__name__") == pkg and code.endswith("__init__.py"))
        f = f.f_back  # type: ignore[assignment]
    return False


_finder: SlimFinder | None = None


def install(keep: Iterable[str]) -> SlimFinder | None:
    """Import only ``keep`` (ccxt exchange ids) eagerly from now on; None if ccxt is loaded."""
    global _finder
    if "ccxt" in sys.modules:
        return None
    if _finder is None:
        _finder = SlimFinder(keep)
        sys.meta_path.insert(0, _finder)
    return _finder
