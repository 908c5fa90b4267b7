"""`asp spec site OUT/`: the spec as a static HTML site, generated from the spec files and checked.

Layout of OUT:
    index.html           PROTOCOL.md rendered, an anchor per section and per requirement ID
    messages/            one page per message type (members, schema, examples), index.html
    sequences.html       a run, a cancel and a resume as SVG sequence diagrams
    requirements.html    the catalog as a table (filterable with JavaScript, complete without)
    registries.html      error codes, close codes, capabilities, fixtures
    asyncapi.html        the AsyncAPI reference; asyncapi.yaml and schema/ beside it
    changelog.html       CHANGELOG.md rendered
    assets/              the stylesheet and the table filter script
Nothing is fetched at build or reading time: the site works offline.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from spec import SCHEMA_DIR, SPEC_DIR
from spec.site import pages
from spec.site.check import check_site
from spec.site.prose import Document, LinkTargets, inline_renderer, render
from spec.site.sequences import Sequence, SequenceError, arrow_text, layout, sequences

MARKER = ".asp-spec-site"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
NAV = (
    ("index.html", "Protocol"),
    ("messages/index.html", "Messages"),
    ("sequences.html", "Sequences"),
    ("requirements.html", "Requirements"),
    ("registries.html", "Registries"),
    ("asyncapi.html", "AsyncAPI"),
    ("changelog.html", "Changelog"),
)
COPIED = ("asyncapi.yaml", "lifecycle.yaml")
ASSETS = ("site.css", "filter.js")


class UsageError(Exception):
    """OUT cannot be used (a file, or a directory with other content)."""


@dataclass(frozen=True)
class BuildResult:
    pages: int
    problems: list[str]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("spec.site", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    env.filters["mermaid"] = _mermaid_text
    env.filters["site_path"] = lambda ref: str(ref).removeprefix("./")
    env.globals["fixture_anchor"] = pages.fixture_anchor
    env.globals["schema_for"] = pages.schema_for
    env.filters["linked"] = _linker(markdown=False)
    env.filters["markdown"] = _linker(markdown=True)
    env.globals["arrow_text"] = arrow_text
    return env


def _linker(*, markdown: bool) -> Callable[[str, str], Markup]:
    """A template filter `text | linked(root)`: the text with requirement IDs and sections linked."""
    renderers: dict[str, Callable[[str], Markup]] = {}

    def linked(text: str, root: str) -> Markup:
        if root not in renderers:
            renderers[root] = inline_renderer(_targets(f"{root}index.html", root), markdown=markdown)
        return renderers[root](text)

    return linked


def _targets(prose_page: str, root: str = "") -> LinkTargets:
    return LinkTargets(
        prose=prose_page,
        catalog=f"{root}requirements.html",
        code=pages.code_links(root),
        capabilities=pages.capability_links(root),
    )


def _mermaid_text(value: Any) -> str:
    """Text safe in a mermaid message or note: `#` and `;` as mermaid's entity codes."""
    return "".join({"#": "#35;", ";": "#59;"}.get(char, char) for char in str(value))


def write_site(out: Path) -> int:
    """Render every page into `out` (an empty directory); returns the number of HTML pages written.

    Raises SequenceError when a sequence scenario breaks the spec, KeyError/ValueError when a spec
    file lacks what a page needs.
    """
    env = _environment()
    written = 0

    def page(path: str, template: str, title: str, **context: Any) -> None:
        nonlocal written
        root = "../" * path.count("/")
        html = env.get_template(template).render(
            root=root, nav=NAV, current=path, page_title=title, version=pages.protocol_version(), **context
        )
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
        written += 1

    protocol = _prose("PROTOCOL.md", prose_page="", defines=True)
    page("index.html", "prose.html.j2", protocol.title, document=protocol)
    changelog = _prose("CHANGELOG.md", prose_page="index.html", defines=False)
    page("changelog.html", "prose.html.j2", changelog.title or "Changelog", document=changelog)

    types = [pages.message_type(name, protocol.code_mentions, "../") for name in pages.message_types()]
    for message in types:
        page(f"messages/{message.name}.html", "message.html.j2", message.name, m=message)
    groups = [
        (direction, [m for m in types if m.direction == direction]) for direction in pages.DIRECTIONS.values()
    ]
    page(
        "messages/index.html",
        "messages_index.html.j2",
        "Messages",
        groups=groups,
        vendor=[e for e in pages.examples_for(pages.VENDOR_SCHEMA) if e.valid],
        entry_invalid=[e for e in pages.examples() if not e.valid and e.schema not in pages.message_types()],
        definitions=pages.definitions("../"),
    )

    scenarios = sequences()
    page(
        "sequences.html",
        "sequences.html.j2",
        "Sequences",
        diagrams=[(s, layout(s)) for s in scenarios],
        mermaid={s.key: _mermaid(env, s) for s in scenarios},
    )
    rows = pages.catalog()
    page("requirements.html", "requirements.html.j2", "Requirements", rows=rows, facets=pages.facets(rows))
    page("registries.html", "registries.html.j2", "Registries", reg=pages.registries())
    page("asyncapi.html", "asyncapi.html.j2", "AsyncAPI reference", api=pages.asyncapi())

    shutil.copytree(SCHEMA_DIR, out / "schema")
    for name in COPIED:
        shutil.copyfile(SPEC_DIR / name, out / name)
    (out / "assets").mkdir(exist_ok=True)
    for name in ASSETS:
        asset = resources.files("spec.site").joinpath("static", name)
        (out / "assets" / name).write_bytes(asset.read_bytes())
    (out / MARKER).write_text("made by asp spec site; the whole folder is replaced on the next build\n")
    return written


def _prose(name: str, *, prose_page: str, defines: bool) -> Document:
    text = (SPEC_DIR / name).read_text(encoding="utf-8")
    return render(text, _targets(prose_page), defines_requirements=defines)


def _mermaid(env: Environment, sequence: Sequence) -> str:
    return env.get_template("sequence.mmd.j2").render(steps=sequence.steps).rstrip() + "\n"


def build(out: Path) -> BuildResult:
    """Build the site into `out` and check it; an earlier build in `out` is replaced whole.

    The site is written to a new directory beside `out` and moved into place, so `out` never
    holds half a site. Raises UsageError when `out` is a file or a directory that is neither
    empty nor an earlier build; OSError when it cannot be written; SequenceError when a
    scenario breaks the spec. Problems the checks find are returned, not raised: the site is
    still written so they can be looked at.
    """
    out = Path(out)
    _usable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        count = write_site(staging)
        problems = check_site(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(pages=count, problems=problems)


def _usable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UsageError(
            f"{out} is a non-empty directory that asp spec site did not make; give a new or empty one"
        )


def run(out: str, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """CLI body of `asp spec site OUT`: exit 0 built and checked, 1 the checks found problems
    (each printed) or the spec's scenarios break it, 2 OUT unusable (one line)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        result = build(Path(out))
    except UsageError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=stderr)
        return EXIT_USAGE
    except SequenceError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_PROBLEMS
    for problem in result.problems:
        print(problem, file=stdout)
    if result.problems:
        print(f"{len(result.problems)} problem(s) in the site written to {out}", file=stdout)
        return EXIT_PROBLEMS
    print(f"ok: {result.pages} pages in {out}, links, anchors and examples checked", file=stdout)
    return EXIT_OK
