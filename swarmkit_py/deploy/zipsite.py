"""Imports from the release's zip of pure-Python packages, as if they were files.

Shipped by the site tar (wheelhouse._site) as the top-level module `_swarmkit_zipsite` in the
release's site-packages, installed at every start of the release's python by the `.pth` line
beside it (`PTH`: site.py runs the `import` lines of `.pth` files), so the agent, the CLI and
`python -m swarmkit_py...` all import from the zip. Why a zip: a fresh host then creates ~800
files instead of ~2,600 when it unpacks a release, and creating files was most of what
installing cost the lab's hosts (bench/README.md, "Toolkit speed").

Why not plain zipimport with the zip on sys.path (Python 3.11):
- zipimporter names each module's `.pyc` as its `__file__` and leaves `co_filename` as it was
  compiled, so tracebacks name paths that do not exist, and code that finds its package from
  `__file__` or `co_filename` (loopwatch) gets it wrong. `ZipSite` names the source inside the
  zip (`<site-packages>/swarmkit-site.zip/pkg/mod.py`) in both, as the file loader does for
  modules on disk; `linecache` (tracebacks, logging) reads the lines through its `get_source`.
- zipimporter reads and unmarshals every module twice (`get_filename`, asked for the module's
  spec, loads the code only to learn its path; `exec_module` loads it again): ZipSite keeps
  what `get_filename` loaded for `get_code`.
- `importlib.metadata` scans every `sys.path` entry, and reading the zip's directory with
  `zipfile` cost each process that asks ~45 ms (pydantic looks for plugins at its first
  model): `Finder` serves the zip's top-level names from `sys.meta_path` instead, and the
  distributions' metadata stays in site-packages as files.
With those, importing the agent costs the same CPU from the zip as from files.

The `.pyc` are checked-hash (PEP 552) and sit beside their sources (the only layout zipimport
reads). This module runs before any other import of the process: standard library only, and
small.
"""

import _imp
import os
import sys
import zipimport

_get_module_code = zipimport._get_module_code  # 3.11-3.13; this module ships with the Python it was built for

ZIP = "swarmkit-site.zip"
"""The zip's name, beside this module in site-packages."""
MODULE = "_swarmkit_zipsite"
"""This module's name in site-packages."""
PTH = f"import {MODULE}; {MODULE}.install()\n"
"""The `.pth` line that installs it."""


class ZipSite(zipimport.zipimporter):
    """zipimporter with the module's source path as its file name, each module's code read
    once, and `co_filename` pointing at the source inside the zip."""

    def __init__(self, path):
        super().__init__(path)
        self._loaded = {}

    def get_filename(self, fullname):
        code, _ispackage, modpath = _get_module_code(self, fullname)
        if modpath.endswith(".pyc") and modpath[len(self.archive) + 1:-1] in self._files:
            modpath = modpath[:-1]
        _imp._fix_co_filename(code, modpath)
        self._loaded[fullname] = code
        return modpath

    def get_code(self, fullname):
        code = self._loaded.pop(fullname, None)
        if code is None:
            self.get_filename(fullname)
            code = self._loaded.pop(fullname)
        return code


class Finder:
    """On `sys.meta_path`: the zip's top-level packages and modules, found in the zip. The zip
    is not put on `sys.path`: `importlib.metadata` scans every entry of `sys.path`, and reading
    a zip's directory with `zipfile` cost each process that asks (pydantic looks for plugins at
    its first model) ~45 ms; the distributions' metadata stays in site-packages as files."""

    def __init__(self, path):
        self.path = path
        self._zip = None
        self._top = frozenset()

    def find_spec(self, fullname, path=None, target=None):
        if path is not None:
            return None  # a submodule: found through its package's __path__ (the path hook)
        if self._zip is None:
            try:
                self._zip = _hook(self.path)
            except ImportError:  # no zip (a damaged release): its modules are not found, and
                self._zip = False  # every other import fails or succeeds as it would without it
            else:
                self._top = frozenset(n.split("/", 1)[0].rsplit(".py", 1)[0] for n in self._zip._files)
        if fullname not in self._top:
            return None
        return self._zip.find_spec(fullname, target)

    def invalidate_caches(self):
        pass


def _hook(path):
    """sys.path_hooks: the zip's directories (its packages' __path__) get a ZipSite."""
    if path != _PATH and not path.startswith(_PATH + "/"):
        raise ImportError("not the release's zip")
    return ZipSite(path)


_PATH = os.path.join(os.path.dirname(__file__), ZIP)


def _excepthook(typ, value, tb):
    # the interpreter's own printer reads source lines from files only: the traceback module
    # asks the loader, so an uncaught error shows its lines from the zip too
    import traceback

    traceback.print_exception(typ, value, tb)


def install():
    if any(isinstance(f, Finder) for f in sys.meta_path):
        return
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
    sys.path_hooks.insert(0, _hook)
    sys.meta_path.append(Finder(_PATH))
