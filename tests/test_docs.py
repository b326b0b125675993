"""The documentation site builds with warnings as errors (``sphinx-build -W``).

Skipped where the ``docs`` extra is not installed.  The notebooks are not executed by the
build (``nb_execution_mode = "off"``; ``tests/test_notebooks.py`` runs them), so the build
takes seconds.  Every public name must get its API page: a name in ``xlevda.__all__`` (or a
public subpackage's) without one fails here.
"""

from __future__ import annotations

import importlib
import shutil
from inspect import ismodule
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("numpydoc")
pytest.importorskip("pydata_sphinx_theme")

# third-party deprecations inside the build (myst-parser on Sphinx's API) are not ours
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
SUBPACKAGES = ("xlevda.methods", "xlevda.metrics", "xlevda.systems", "xlevda.ldensf")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from sphinx.cmd.build import build_main

    out = tmp_path_factory.mktemp("site")
    docs = out / "docs"
    # a copy of the sources (with the notebooks docs/examples links to): the generated API
    # stubs stay out of the working tree
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build", "generated"))
    status = build_main(["-W", "--keep-going", "-q", "-b", "html", str(docs), str(out / "html")])
    assert status == 0, "sphinx-build -W reported warnings or errors (printed above)"
    return out / "html"


def test_site_builds_without_warnings(site):
    assert (site / "index.html").is_file()
    assert (site / "examples" / "01_quickstart.html").is_file()


def expected_pages() -> list[str]:
    """``module.name`` of every public name; a name the top level exports is documented
    there (``xlevda.LEVDA``, not ``xlevda.methods.LEVDA``)."""
    import xlevda

    pages = [f"xlevda.{n}" for n in xlevda.__all__ if n != "__version__"]
    for package in SUBPACKAGES:
        module = importlib.import_module(package)
        names = getattr(module, "__all__", None) or [
            n for n, v in vars(module).items() if not n.startswith("_") and not ismodule(v)
        ]
        for n in names:
            shared = getattr(xlevda, n, None) is getattr(module, n)
            pages.append(f"xlevda.{n}" if shared else f"{package}.{n}")
    return pages


def test_every_public_name_has_a_page(site):
    pages = {p.stem for p in (site / "api" / "generated").glob("*.html")}
    missing = [n for n in expected_pages() if n not in pages]
    assert not missing, missing
    assert "xlevda.methods.OI" in pages and "xlevda.systems.tsunami.simulate" in pages
