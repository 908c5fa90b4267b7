"""Checks over a built spec site, reading only the generated files (what a reader gets).

- every internal href (a, link, script) resolves: the file exists inside the site and, with a
  fragment, that page has an element with that id; no page repeats an id;
- every example frame shown (`data-example-schema`) validates against its schema, or, marked
  invalid, is rejected by it;
- every requirement ID of the catalog has its anchor in the prose and in the catalog table;
- every message type (schemas and asyncapi.yaml) has its page.

Each function returns a list of problems, one line each; empty means the site holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from spec.catalog import requirements
from spec.resources import load_yaml, schema_documents
from spec.schemas import validator

PROSE_PAGE = "index.html"
CATALOG_PAGE = "requirements.html"
LINK_ATTRIBUTES = {"a": "href", "link": "href", "script": "src", "img": "src"}


@dataclass
class Page:
    """What the checks need of one HTML page: its ids, its links, its example frames."""

    ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    examples: list[tuple[str, bool, str]] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._example: tuple[str, bool] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.page.ids.append(str(values["id"]))
        link = values.get(LINK_ATTRIBUTES.get(tag, ""))
        if link is not None:
            self.page.links.append(link)
        if "data-example-schema" in values:
            valid = values.get("data-example-valid", "true") == "true"
            self._example = (str(values["data-example-schema"]), valid)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._example is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._example is not None and tag == "code":
            schema, valid = self._example
            self.page.examples.append((schema, valid, "".join(self._text)))
            self._example = None


def parse_site(root: Path) -> dict[str, Page]:
    """Every HTML page of the site by its path relative to root (`messages/session.html`)."""
    pages = {}
    for path in sorted(root.rglob("*.html")):
        parser = _PageParser()
        parser.feed(path.read_text(encoding="utf-8"))
        parser.close()
        pages[path.relative_to(root).as_posix()] = parser.page
    return pages


def broken_links(root: Path, pages: dict[str, Page] | None = None) -> list[str]:
    """Internal links that lead nowhere, and ids a page repeats. External (scheme) links are not followed."""
    pages = pages if pages is not None else parse_site(root)
    problems: list[str] = []
    site = root.resolve()
    for name, page in pages.items():
        repeated = sorted({i for i in page.ids if page.ids.count(i) > 1})
        problems.extend(f"{name}: id {i!r} appears more than once" for i in repeated)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue
            target = (root / name).parent / unquote(parts.path) if parts.path else root / name
            resolved = target.resolve()
            if not resolved.is_relative_to(site) or not resolved.is_file():
                problems.append(f"{name}: link {link!r} leads to no file of the site")
                continue
            if parts.fragment:
                key = resolved.relative_to(site).as_posix()
                if key not in pages:
                    problems.append(f"{name}: link {link!r} has a fragment but its target is not a page")
                elif unquote(parts.fragment) not in pages[key].ids:
                    problems.append(f"{name}: link {link!r}: {key} has no element with id {parts.fragment!r}")
    return problems


def example_problems(root: Path, pages: dict[str, Page] | None = None) -> list[str]:
    """Example frames shown that their schema does not judge as the page says (valid or invalid)."""
    pages = pages if pages is not None else parse_site(root)
    problems: list[str] = []
    for name, page in pages.items():
        for number, (schema, valid, text) in enumerate(page.examples, start=1):
            where = f"{name}: example {number} ({schema})"
            if schema not in schema_documents():
                problems.append(f"{where}: no schema named {schema!r}")
                continue
            try:
                frame = json.loads(text)
            except ValueError as exc:
                problems.append(f"{where}: not JSON: {exc}")
                continue
            errors = [error.message for error in validator(schema).iter_errors(frame)]
            if valid and errors:
                problems.append(f"{where}: shown as valid but {errors[0][:160]}")
            elif not valid and not errors:
                problems.append(f"{where}: shown as invalid but its schema accepts it")
    return problems


def requirement_anchor_problems(root: Path, pages: dict[str, Page] | None = None) -> list[str]:
    """Requirement IDs of the catalog without an anchor in the prose page or the catalog page."""
    pages = pages if pages is not None else parse_site(root)
    problems: list[str] = []
    for page_name in (PROSE_PAGE, CATALOG_PAGE):
        ids = set(pages[page_name].ids) if page_name in pages else set()
        problems.extend(
            f"{page_name}: no anchor for requirement {requirement_id}"
            for requirement_id in requirements()
            if requirement_id not in ids
        )
    return problems


def message_page_problems(root: Path) -> list[str]:
    """Message types (schemas with a direction, asyncapi.yaml's messages) without their page."""
    types = {name for name, doc in schema_documents().items() if "x-asp-direction" in doc}
    types |= set(load_yaml("asyncapi.yaml").get("components", {}).get("messages", {}))
    return [
        f"messages/{name}.html: missing (message type {name})"
        for name in sorted(types)
        if not (root / "messages" / f"{name}.html").is_file()
    ]


def check_site(root: Path) -> list[str]:
    """All the checks above over the site in root."""
    pages = parse_site(root)
    return (
        broken_links(root, pages)
        + example_problems(root, pages)
        + requirement_anchor_problems(root, pages)
        + message_page_problems(root)
    )
