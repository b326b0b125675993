"""Sphinx configuration of the xlevda documentation site.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs`` extra installs what
it needs; ``tests/test_docs.py`` runs it).  The notebooks in ``examples/`` (linked as
``docs/examples``) are shown as stored, not executed: the test suite executes them
(``tests/test_notebooks.py``).  The API reference is generated from ``xlevda.__all__`` and
the public subpackages' ``__all__`` by autosummary (``api/index.rst``).
"""

from __future__ import annotations

import importlib
from inspect import ismodule

import xlevda

project = "xlevda"
author = "the xlevda developers"
copyright = "2026, the xlevda developers"
version = release = xlevda.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
# docs/results/ holds the data behind the results pages, not pages
exclude_patterns = ["_build", "**.ipynb_checkpoints", "results/**"]
templates_path = ["_templates"]

# notebooks: shown as stored (outputs stripped in git); executed by the test suite instead
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API reference: every name of the modules' __all__, one page each
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"xlevda {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

TOPLEVEL = set(xlevda.__all__) - {"__version__"}


def public_names(modname: str) -> list[str]:
    """A module's public names: its ``__all__``, or without one (``xlevda.methods``
    re-exports with ``import X as X``) its attributes that are not private or submodules.
    Below the top level, names the top level exports are left to the top level's pages."""
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and not ismodule(v)]
    names = [n for n in names if n != "__version__"]
    if modname != "xlevda":
        names = [n for n in names if n not in TOPLEVEL or ismodule(getattr(module, n))]
    return sorted(names)


def shared_names(modname: str) -> list[str]:
    """The names of a subpackage documented on the top level's pages instead."""
    if modname == "xlevda":
        return []
    module = importlib.import_module(modname)
    return sorted(n for n in TOPLEVEL if getattr(module, n, None) is getattr(xlevda, n))


autosummary_context = {"public_names": public_names, "shared_names": shared_names}
suppress_warnings = ["config.cache"]  # the context holds functions: rebuilt every time
