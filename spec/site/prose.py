"""Markdown of the spec (PROTOCOL.md, CHANGELOG.md) rendered to HTML with markdown-it-py.

Rules added to markdown-it's core chain, working on tokens (never on HTML strings):

- numbered headings (`## 15. History ...`) get the anchor `section-15`, other headings a slug;
- the defining occurrence of a requirement, `**[ASP-XXX-NNN]**`, becomes a link target with the
  ID as its id, linking to the ID's row of the catalog;
- every other mention of an ID links to its definition, every `§N` to its section;
- a code span naming something the site has a page for (a message type, an error code, a
  capability, a spec file) links to it.

A mention of something that does not exist still becomes a link: the site's link check then
reports it as broken, so a dangling reference in the prose fails the build.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup
from mdit_py_plugins.anchors import anchors_plugin

REQUIREMENT_ID = re.compile(r"ASP-[A-Z]+-\d{3}")
DEFINITION = re.compile(rf"^\[({REQUIREMENT_ID.pattern})\]$")
MENTION = re.compile(rf"({REQUIREMENT_ID.pattern})|§(\d+)")
NUMBERED_HEADING = re.compile(r"^(\d+)\.\s")
CAPABILITY_CONTEXT = re.compile(r"capabilit(y|ies)\s*$")
LIST_SEPARATOR = re.compile(r"^\s*(?:,|/|\band\b|\bor\b)\s*(?:optional\s+)?$")


@dataclass(frozen=True)
class Heading:
    level: int
    id: str
    text: str


@dataclass(frozen=True)
class Document:
    """One rendered markdown file: its h1 title, the body HTML and the headings for a table of contents."""

    title: str
    html: Markup
    headings: tuple[Heading, ...]
    code_mentions: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class LinkTargets:
    """Where the rendered prose points.

    prose: the page holding the requirement definitions and numbered sections ("" when the
    document rendered is that page). catalog: the page with one row per requirement ID.
    code: code-span text -> href; capabilities: capability name -> href (used when the span
    follows the word "capability").
    """

    prose: str
    catalog: str
    code: Mapping[str, str]
    capabilities: Mapping[str, str]


def section_slug(title: str) -> str:
    """`15. History, persistence` -> `section-15`; other titles -> a GitHub-style slug."""
    numbered = NUMBERED_HEADING.match(title)
    if numbered:
        return f"section-{numbered.group(1)}"
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


def render(markdown: str, targets: LinkTargets, *, defines_requirements: bool) -> Document:
    """Render one markdown document; `defines_requirements` marks `**[ID]**` as definitions.

    Raw HTML in the markdown is not passed through (html off): the prose is text.
    """
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    anchors_plugin(md, min_level=2, max_level=3, slug_func=section_slug, permalink=True, permalinkSymbol="#")
    md.core.ruler.push("asp_links", _link_rule(targets, defines_requirements))
    tokens = md.parse(markdown)
    title, headings = _outline(tokens)
    mentions = _code_mentions(tokens) if defines_requirements else {}
    html = md.renderer.render(tokens, md.options, {})
    return Document(title=title, html=Markup(html), headings=headings, code_mentions=mentions)


def _code_mentions(tokens: list[Token]) -> dict[str, frozenset[str]]:
    """Requirement ID -> the code spans of the paragraph that defines it (`text_delta`, `seq`, ...)."""
    mentions: dict[str, frozenset[str]] = {}
    for token in tokens:
        if token.type != "inline":
            continue
        children = token.children or []
        codes = frozenset(child.content for child in children if child.type == "code_inline")
        for child in children:
            defined = child.attrGet("id") if child.type == "link_open" else None
            if isinstance(defined, str) and REQUIREMENT_ID.fullmatch(defined):
                mentions[defined] = codes
    return mentions


def _outline(tokens: list[Token]) -> tuple[str, tuple[Heading, ...]]:
    title = ""
    headings: list[Heading] = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        text = _plain_text(tokens[index + 1])
        level = int(token.tag[1])
        if level == 1 and not title:
            title = text
        slug = token.attrGet("id")
        if level > 1 and isinstance(slug, str):
            headings.append(Heading(level=level, id=slug, text=text))
    return title, tuple(headings)


def _plain_text(inline: Token) -> str:
    return "".join(
        child.content for child in inline.children or () if child.type in {"text", "code_inline"}
    ).strip()


def _link_rule(targets: LinkTargets, defines_requirements: bool) -> Callable[[StateCore], None]:
    def rule(state: StateCore) -> None:
        for token in state.tokens:
            if token.type == "inline" and token.children:
                token.children = _linked(token.children, targets, defines_requirements)

    return rule


def _linked(children: list[Token], targets: LinkTargets, defines_requirements: bool) -> list[Token]:
    out: list[Token] = []
    inside_link = False
    plain = _member_lists(children, targets)
    for position, child in enumerate(children):
        if child.type in {"link_open", "link_close"}:
            inside_link = child.type == "link_open"
            out.append(child)
            continue
        if inside_link:
            out.append(child)
            continue
        if child.type == "text":
            definition = DEFINITION.match(child.content)
            previous = children[position - 1].type if position else ""
            if defines_requirements and definition and previous == "strong_open":
                requirement_id = definition.group(1)
                out.extend(
                    _link(
                        [_text(child.content)],
                        f"{targets.catalog}#{requirement_id}",
                        id=requirement_id,
                        cls="req-def",
                    )
                )
            else:
                out.extend(_mentions(child.content, targets))
        elif child.type == "code_inline":
            href = None if position in plain else _code_href(child.content, children[:position], targets)
            out.extend(_link([child], href) if href else [child])
        else:
            out.append(child)
    return out


def _member_lists(children: list[Token], targets: LinkTargets) -> set[int]:
    """Positions of code spans in a list (`code`, `message`, `retryable`) naming something without a
    page: such a list names members, so none of it is linked (the error's `message` member is not
    the `message` type)."""
    plain: set[int] = set()
    run: list[int] = []
    for position, child in enumerate([*children, Token("text", "", 0, content=".")]):
        if child.type == "code_inline":
            run.append(position)
        elif child.type == "text" and run and LIST_SEPARATOR.match(child.content):
            continue
        else:
            hrefs = [_code_href(children[i].content, children[:i], targets) for i in run]
            if len(run) > 1 and not all(hrefs):
                plain.update(run)
            run = []
    return plain


def _code_href(content: str, before: list[Token], targets: LinkTargets) -> str | None:
    preceding = before[-1].content if before and before[-1].type == "text" else ""
    if CAPABILITY_CONTEXT.search(preceding) and content in targets.capabilities:
        return targets.capabilities[content]
    return targets.code.get(content)


def _mentions(text: str, targets: LinkTargets) -> list[Token]:
    tokens: list[Token] = []
    cursor = 0
    for match in MENTION.finditer(text):
        if match.start() > cursor:
            tokens.append(_text(text[cursor : match.start()]))
        requirement_id, section = match.group(1), match.group(2)
        href = f"{targets.prose}#{requirement_id}" if requirement_id else f"{targets.prose}#section-{section}"
        tokens.extend(_link([_text(match.group(0))], href, cls="req-ref" if requirement_id else "sec-ref"))
        cursor = match.end()
    if cursor < len(text):
        tokens.append(_text(text[cursor:]))
    return tokens


def _text(content: str) -> Token:
    return Token("text", "", 0, content=content)


def _link(inner: list[Token], href: str, *, id: str | None = None, cls: str | None = None) -> list[Token]:
    opening = Token("link_open", "a", 1)
    opening.attrSet("href", href)
    if id:
        opening.attrSet("id", id)
    if cls:
        opening.attrSet("class", cls)
    return [opening, *inner, Token("link_close", "a", -1)]


def inline_renderer(targets: LinkTargets, *, markdown: bool) -> Callable[[str], Markup]:
    """A one-line renderer for text from the YAML files: requirement IDs and `§N` become links.

    markdown=True reads the text as CommonMark (AsyncAPI descriptions are CommonMark);
    markdown=False keeps it literal (catalog statements use `*` as in `asp.v*`).
    """
    md = MarkdownIt("commonmark" if markdown else "zero", {"html": False})
    md.core.ruler.push("asp_links", _link_rule(targets, defines_requirements=False))

    def rendered(text: str) -> Markup:
        return Markup(md.renderInline(str(text)))

    return rendered
