"""The documentation builds with warnings as errors, and the built pages hold what they promise.

The same command as in docs/getting_started.md, run once for the module (the `site`
fixture); every check below reads the HTML it wrote with the standard library's
parser. Sphinx, MyST-NB and the theme come with the `test` extra (through `docs`),
so this runs in CI; it is skipped only where they are not installed.
"""

import html.parser
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import urllib.parse

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("sphinx_book_theme")

import jaxtune

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"docs build failed:\n{build.stderr[-8000:]}"
    return out / "html"


class Page(html.parser.HTMLParser):
    """One built page: its element ids, scripts, stylesheets, images, links and text."""

    def __init__(self, path: pathlib.Path):
        super().__init__()
        self.path = path
        self.ids: set[str] = set()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.images: list[str] = []
        self.links: list[tuple[str, str]] = []   # (class, href)
        self._text: list[str] = []
        self._skip = 0
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "link" and "stylesheet" in (attrs.get("rel") or ""):
            self.stylesheets.append(attrs.get("href") or "")
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs.get("class") or "", attrs["href"]))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self._text.append(data)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def resolve(self, src: str) -> pathlib.Path:
        return (self.path.parent / urllib.parse.urlsplit(src).path).resolve()


def pages(site: pathlib.Path, pattern: str = "**/*.html") -> list[Page]:
    return [Page(path) for path in sorted(site.glob(pattern)) if "_static" not in path.parts]


def is_external(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return bool(parts.scheme or parts.netloc)


# ------------------------------------------------------------------------------ the whole site

def test_no_page_loads_a_script_or_stylesheet_from_outside_the_site(site):
    """Read on an air-gapped cluster, the site must work: MathJax, the theme and
    search all come from the built folder."""
    external = [(page.path.relative_to(site).as_posix(), url) for page in pages(site)
                for url in page.scripts + page.stylesheets if is_external(url)]
    assert not external, f"pages load from the network: {external[:10]}"
    missing = [(page.path.relative_to(site).as_posix(), url) for page in pages(site)
               for url in page.scripts + page.stylesheets if not page.resolve(url).is_file()]
    assert not missing, f"pages load files the site does not hold: {missing[:10]}"


def test_math_is_typeset_by_the_mathjax_copy_in_the_site(site):
    page = Page(site / "api" / "schedules.html")
    mathjax = [src for src in page.scripts if "mathjax" in src.lower()]
    assert mathjax, "the schedules page has formulas but loads no MathJax"
    for src in mathjax:
        assert page.resolve(src).stat().st_size > 100_000, f"{src} is not a whole MathJax build"
    fonts = site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert list(fonts.glob("MathJax_Main-Regular.woff")), "MathJax's fonts are not in the site"


def test_every_public_name_has_a_reference_entry(site):
    ids = set().union(*(page.ids for page in pages(site, "api/*.html")))
    missing = [name for name in jaxtune.__all__
               if not name.startswith("__") and f"jaxtune.{name}" not in ids]
    assert not missing, f"not in the API reference: {missing}"


def test_every_notebook_page_shows_every_plot_of_its_notebook(site):
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        path = site / "notebooks" / f"{notebook.stem}.html"
        assert path.exists(), f"{notebook.name} is not in the site"
        cells = json.loads(notebook.read_text())["cells"]
        plots = sum("image/png" in output.get("data", {})
                    for cell in cells for output in cell.get("outputs", []))
        page = Page(path)
        shown = [src for src in page.images
                 if src.startswith("data:image/png") or page.resolve(src).is_file()]
        assert plots and len(shown) >= plots, (
            f"{notebook.name} has {plots} plots; its page shows {len(shown)}")


def test_user_guide_and_how_to_pages(site):
    for page in ["getting_started", "course", "guide/spaces", "guide/sweep", "guide/results",
                 "guide/schedules", "guide/transforms", "guide/strategies", "guide/devices",
                 "howto/index", "howto/resume", "howto/interrupt", "howto/ask_and_tell",
                 "howto/write_a_strategy", "howto/write_a_data_source", "howto/memory",
                 "howto/recompilation", "howto/slurm", "howto/reuse_the_best",
                 "troubleshooting", "changelog"]:
        assert (site / f"{page}.html").exists(), page


# ------------------------------------------------------------------------------ the API pages

def test_api_signatures_show_no_raw_markup(site):
    """Types go into each argument's description, dataclass defaults show their value,
    and no class says it derives from `object`."""
    for page in pages(site, "api/*.html"):
        text = page.text
        for raw in ["~numpy", "~typing", "<factory>", "Bases: object", "TypeAliasForwardRef",
                    "jaxlib._jax", "optax._src"]:
            assert raw not in text, f"{page.path.name} shows {raw!r}"


def test_every_public_function_documents_its_arguments(site):
    """A function that takes arguments has an `Args:` section (a Parameters field)."""
    entry = re.compile(r'<dl class="py function">\s*<dt class="sig[^"]*" id="(jaxtune\.\w+)">(.*?)</dt>'
                       r"\s*<dd>(.*?)</dd>\s*</dl>", re.S)
    undocumented = [name for page in sorted((site / "api").glob("*.html"))
                    for name, signature, body in entry.findall(page.read_text())
                    if "sig-param" in signature and "Parameters" not in body]
    assert not undocumented, f"functions without `Args:`: {undocumented}"


def test_long_signatures_put_one_parameter_per_line(site):
    page = (site / "api" / "sweep.html").read_text()
    start = page.index('id="jaxtune.sweep"')
    signature = page[start:page.index("</dt>", start)]
    assert "sig-param-decl" in signature or signature.count("<dd>") > 10, (
        "the signature of `sweep` is one paragraph of parameters")


def test_types_of_optax_numpy_and_jax_link_to_their_documentation(site):
    hrefs = {href for page in pages(site, "api/*.html") for _, href in page.links}
    for target in ["optax.readthedocs.io/en/latest/api/transformations.html#optax.GradientTransformation",
                   "numpy.org/doc/stable/reference/generated/numpy.ndarray.html#numpy.ndarray",
                   "docs.jax.dev/en/latest/_autosummary/jax.Array.html#jax.Array"]:
        assert any(target in href for href in hrefs), f"no link to {target}"


def test_every_api_section_opens_with_a_summary_table(site):
    for page in pages(site, "api/*.html"):
        if page.path.name == "index.html":
            continue
        source = page.path.read_text()
        assert 'class="autosummary' in source, f"{page.path.name} has no summary table"
        title = source[source.index("<h1>") + 4:source.index("</h1>")]
        assert "jaxtune." not in title, f"{page.path.name} is titled with a module name: {title!r}"


# ------------------------------------------------------------------------------ the course

def course_order() -> list[str]:
    """The notebooks in the order docs/course.md's table teaches them."""
    return re.findall(r"^\| \[[^]]+\]\(notebooks/(\w+)\.ipynb\)", (DOCS / "course.md").read_text(),
                      flags=re.M)


def test_the_course_reads_in_the_order_its_table_teaches(site):
    order, page = [], Page(site / "course.html")
    while True:
        following = [href for cls, href in page.links if "right-next" in cls]
        if not following or page.resolve(following[0]).parent.name != "notebooks":
            break
        page = Page(page.resolve(following[0]))
        order.append(page.path.stem)
    assert order == course_order()
    assert sorted(order) == sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))


def test_no_notebook_shows_the_value_of_a_setup_call():
    """`jt.use_cpu_devices()` returns the device count; a cell that ends with it shows
    a stray number unless the call ends with `;`."""
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            lines = [line for line in "".join(cell["source"]).splitlines() if line.strip()]
            if lines and lines[-1].lstrip().startswith("jt.use_cpu_devices("):
                results = [o for o in cell.get("outputs", []) if o["output_type"] == "execute_result"]
                assert not results, f"{notebook.name}: a cell ending in {lines[-1]!r} shows {results}"


# ------------------------------------------------------------------------------ the pages' sources

def code_blocks(path: pathlib.Path, languages=("python", "bash", "text", "")) -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    return [body for language, body in blocks if language in languages]


def test_code_lines_fit_the_column():
    """The book theme's text column holds about 90 characters of code at 1,400 px. (The
    notebooks' cells, shown in Getting started from `_generated/`, are as executed.)"""
    long = [(path.relative_to(DOCS).as_posix(), line)
            for path in sorted(DOCS.rglob("*.md")) if not {"_build", "_generated"} & set(path.parts)
            for block in code_blocks(path) for line in block.splitlines() if len(line) > 90]
    assert not long, f"code lines wider than the column: {long[:5]}"


def test_tables_of_the_comparison_fit_the_page():
    """A table of prose cells is readable at 1,400 px with at most four columns."""
    text = (DOCS / "comparison.md").read_text()
    headers = re.findall(r"^(\|.*\|)\n\|[-| :]+\|$", text, flags=re.M)
    assert headers
    for header in headers:
        assert header.count("|") - 1 <= 4 or "N |" in header or "| N" in header, header


def test_the_landing_page_example_runs_as_written(tmp_path, monkeypatch):
    (snippet,) = code_blocks(DOCS / "index.md", ("python",))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "docs/index.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best.mean > 0.8, result.best


def test_the_repository_address_is_configured_and_called_a_placeholder(site):
    """docs/conf.py holds the repository and issue-tracker addresses; until the project
    is published they are placeholders, and the install page says so."""
    text = Page(site / "getting_started.html").text
    assert "example.org/jaxtune" in text and "placeholder" in text
    assert "{{" not in text


def test_every_error_on_the_troubleshooting_page_is_one_jaxtune_raises():
    """Each entry is headed by words of a message in jaxtune's source (adjacent string
    literals joined), so the page cannot describe an error that no longer exists."""
    source = "".join(path.read_text() for path in sorted((ROOT / "jaxtune").rglob("*.py")))
    source = re.sub(r'"\s*\n\s*[rfb]*"', "", source)
    quoted = re.findall(r'^\*\*"(.+?)"\*\*', (DOCS / "troubleshooting.md").read_text(), flags=re.M)
    assert len(quoted) >= 15
    missing = [part for words in quoted for part in words.split(" ... ") if part not in source]
    assert not missing, f"troubleshooting.md quotes messages jaxtune does not raise: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("page", ["write_a_strategy", "ask_and_tell", "reuse_the_best"])
def test_how_to_recipes_run_after_the_landing_page_example(page, tmp_path, monkeypatch):
    """The recipes assume the landing page's functions and data; they run as written
    (with fewer steps, so the suite stays fast)."""
    pytest.importorskip("optuna")
    (landing,) = code_blocks(DOCS / "index.md", ("python",))
    setup = landing[:landing.index("result = jt.sweep(")]
    recipes = [re.sub(r"\bsteps=[\d_]+", "steps=60", block)
               for block in code_blocks(DOCS / "howto" / f"{page}.md", ("python",))]
    if page == "reuse_the_best":
        recipes.insert(0, "result = jt.sweep(loss_fn, init_fn, make_optimizer, space, "
                          "data=(data.x_train, data.y_train), batch_size=128, steps=60, trials=4, "
                          "seeds=2, eval_fn=eval_fn, eval_data=(data.x_valid, data.y_valid), "
                          "metric='accuracy', progress=False)")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in [setup, *recipes]:
        exec(compile(block, f"docs/howto/{page}.md", "exec"), namespace)


# ------------------------------------------------------------------------------ benchmark figures

@pytest.fixture
def bench_tables(monkeypatch):
    """bench/tables.py and bench/_cli.py, imported as the bench scripts import them."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _cli

    # By path: "tables" alone could be PyTables.
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    return tables, _cli


def test_benchmark_tables_in_the_readme_and_docs_are_written_from_the_bench_records(bench_tables):
    tables, _ = bench_tables
    shown = set()
    for page in tables.PAGES:
        text = page.read_text()
        assert tables.render(text) == text, (
            f"{page.name}'s benchmark tables differ from bench/results/; run `python bench/tables.py`")
        shown |= {match["name"] for match in tables.MARKER.finditer(text)}
    assert shown == set(tables.TABLES)
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        record = json.loads(path.read_text())
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", record["date"]), path.name
        assert record["machine"] and record["command"].startswith("python bench/"), path.name


def test_a_changed_record_changes_every_page_that_quotes_it(bench_tables, tmp_path, monkeypatch):
    tables, _ = bench_tables
    for path in (ROOT / "bench" / "results").glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    record = json.loads((tmp_path / "vs_hyperoptax.json").read_text())
    record["summary"]["cells"][0]["ratio"] = 0.5
    (tmp_path / "vs_hyperoptax.json").write_text(json.dumps(record))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    for page in tables.PAGES:
        assert "0.50×" in tables.render(page.read_text()), page.name


def test_a_bench_scripts_json_becomes_a_record_the_tables_read(bench_tables, tmp_path, monkeypatch):
    """`--json` writes the machine and date beside the script's own results, and the
    tables summarize those results as they would a transcribed record."""
    tables, cli = bench_tables
    raw = {"members": 2, "steps": 10, "chunk": 10,
           "member_steps_per_s": {"in-memory arrays": 100.0, "host iterator": 90.0}}
    monkeypatch.setattr(sys, "argv", ["bench/data_sources.py", "--steps", "10"])
    cli.write_json(str(tmp_path / "data_sources_cpu.json"), raw)
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    record = tables.load("data_sources_cpu")
    assert record["command"] == "python bench/data_sources.py --steps 10"
    assert record["summary"]["member_steps_per_s"]["host iterator"] == 90.0
    assert record["machine"]["backend"] == "cpu" and record["machine"]["cores_used"] >= 1
    assert re.match(r"\d{4}-\d\d-\d\d, \d+ of \d+ cores", tables.measured_on(record))
