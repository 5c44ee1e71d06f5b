"""The documentation builds with warnings as errors, and documents every public name.

The same command as in docs/getting_started.md. Sphinx, MyST-NB and the theme come
with the `test` extra (through `docs`), so this runs in CI; it is skipped only
where they are not installed.
"""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("sphinx_book_theme")

import jaxtune

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")]
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"docs build failed:\n{build.stderr[-8000:]}"
    return out / "html"


def test_every_public_name_has_a_reference_entry(site):
    pages = "".join(path.read_text() for path in (site / "api").glob("*.html"))
    missing = [name for name in jaxtune.__all__
               if not name.startswith("__") and f'id="jaxtune.{name}"' not in pages]
    assert not missing, f"not in the API reference: {missing}"


def test_every_notebook_is_rendered_with_its_outputs(site):
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"{notebook.name} is not in the site"
        assert "data:image/png" in page.read_text() or list((site / "_images").glob("*.png")), (
            f"{notebook.name} is rendered without its plots")


def test_user_guide_pages(site):
    for page in ["getting_started", "course", "guide/spaces", "guide/sweep", "guide/results",
                 "guide/schedules", "guide/transforms", "guide/strategies", "guide/devices"]:
        assert (site / f"{page}.html").exists(), page
