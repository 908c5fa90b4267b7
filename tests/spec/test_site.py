"""`asp spec site`: the spec as HTML, generated from the spec files and held to them.

The site is built once per module from the real spec files; the checks read the generated HTML
as a browser would get it. Each check is also shown to catch a fault planted in a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asp_cli.main import main
from spec import EXAMPLES_DIR
from spec.catalog import requirements
from spec.registry import capabilities, close_codes, error_codes, fixtures
from spec.resources import message_schema_names
from spec.site.build import MARKER, BuildResult, build
from spec.site.check import (
    broken_links,
    example_problems,
    message_page_problems,
    parse_site,
    requirement_anchor_problems,
)
from spec.site.pages import fixture_anchor
from spec.site.prose import LinkTargets, render
from spec.site.sequences import Step, check, sequences


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    out = tmp_path_factory.mktemp("site") / "site"
    return out, build(out)


@pytest.fixture(scope="module")
def site(built: tuple[Path, BuildResult]) -> Path:
    return built[0]


def test_the_site_builds_and_its_own_checks_pass(built: tuple[Path, BuildResult]) -> None:
    out, result = built
    assert result.problems == []
    assert result.pages == 7 + len(message_schema_names("server")) + len(message_schema_names("client"))
    assert (out / MARKER).is_file()


def test_every_requirement_id_has_an_anchor_in_the_prose_and_the_catalog(site: Path) -> None:
    pages = parse_site(site)
    assert requirement_anchor_problems(site, pages) == []
    for requirement_id in requirements():
        assert requirement_id in pages["index.html"].ids
        assert requirement_id in pages["requirements.html"].ids


def test_every_example_shown_validates_against_its_schema(site: Path) -> None:
    pages = parse_site(site)
    assert example_problems(site, pages) == []
    shown = [example for page in pages.values() for example in page.examples]
    assert any(not valid for _, valid, _ in shown), "the invalid examples are shown too"
    assert sum(1 for schema, _, _ in shown if schema in {"message", "text_delta"}) >= 4


def test_every_example_file_is_shown(site: Path) -> None:
    shown = {
        json.dumps(json.loads(text), sort_keys=True)
        for page in parse_site(site).values()
        for _, _, text in page.examples
    }
    for path in sorted(EXAMPLES_DIR.glob("*valid/*.json")):
        assert json.dumps(json.loads(path.read_text()), sort_keys=True) in shown, path.name


def test_no_internal_link_is_broken(site: Path) -> None:
    pages = parse_site(site)
    assert broken_links(site, pages) == []
    internal = [link for page in pages.values() for link in page.links if "://" not in link]
    assert len(internal) > 500, "the pages link to each other"


def test_the_page_for_each_message_type_exists(site: Path) -> None:
    assert message_page_problems(site) == []
    for name in message_schema_names("server") + message_schema_names("client"):
        page = (site / "messages" / f"{name}.html").read_text()
        assert f'data-example-schema="{name}"' in page, f"{name}: no example beside its members"


def test_every_registry_entry_has_its_row(site: Path) -> None:
    ids = set(parse_site(site)["registries.html"].ids)
    expected = (
        {f"error-{code}" for code in error_codes()}
        | {f"close-{code}" for code in close_codes()}
        | {f"capability-{name}" for name in capabilities()}
        | {fixture_anchor(name) for name in fixtures()}
    )
    assert expected - ids == set()
    assert {"error-shutting_down", "close-1007", "close-4005"} <= ids, "the 1.1 codes"


def test_the_catalog_table_carries_every_facet_of_every_requirement(site: Path) -> None:
    html = (site / "requirements.html").read_text()
    for requirement in requirements().values():
        row = html[html.index(f'<tr id="{requirement.id}"') :].split(">", 1)[0]
        for facet in ("level", "section", "binds", "method", "since"):
            assert f'data-{facet}="{getattr(requirement, facet)}"' in row, (requirement.id, facet)
    for since in {r.since for r in requirements().values()}:
        assert f'<option value="{since}">' in html
    assert any(r.since == "1.1" for r in requirements().values())


def test_each_sequence_diagram_draws_every_frame_of_its_scenario(site: Path) -> None:
    html = (site / "sequences.html").read_text()
    for scenario in sequences():
        frames = [step for step in scenario.steps if step.kind in {"client", "server"}]
        assert f'id="svg-title-{scenario.key}"' in html
        start = html.index(f'id="svg-title-{scenario.key}"')
        svg = html[start : html.index("</svg>", start)]
        assert svg.count('<g class="message') == len(frames), scenario.key
    assert {s.key for s in sequences()} == {"run", "cancel", "resume"}


def test_the_site_works_offline(site: Path) -> None:
    for path in site.rglob("*.html"):
        text = path.read_text()
        for fetched in ('src="http', 'href="http', "@import", "url(http"):
            assert fetched not in text, f"{path.name} fetches {fetched}"
    assert "http" not in (site / "assets" / "site.css").read_text()


# --- the checks catch what they are for ------------------------------------------------------------


def _copy(site: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(site, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_a_dangling_reference_is_a_broken_link(site: Path, tmp_path: Path) -> None:
    copy = _copy(site, tmp_path)
    _edit(copy / "index.html", 'href="#section-1"', 'href="#section-99"')
    _edit(copy / "messages" / "index.html", 'href="session.html"', 'href="sessions.html"')
    problems = broken_links(copy)
    assert any("#section-99" in problem for problem in problems)
    assert any("sessions.html" in problem for problem in problems)


def test_a_missing_requirement_anchor_is_found(site: Path, tmp_path: Path) -> None:
    copy = _copy(site, tmp_path)
    _edit(copy / "requirements.html", 'id="ASP-TRN-001"', 'id="ASP-TRN-00x"')
    assert requirement_anchor_problems(copy) == ["requirements.html: no anchor for requirement ASP-TRN-001"]


def test_an_example_that_breaks_its_schema_is_found(site: Path, tmp_path: Path) -> None:
    copy = _copy(site, tmp_path)
    quoted = "&#34;delta&#34;: &#34;{}&#34;"  # the page's escaping of "delta": "..."
    _edit(copy / "messages" / "text_delta.html", quoted.format("Hel"), quoted.format(""))
    problems = example_problems(copy)
    assert len(problems) == 1 and "text_delta" in problems[0], problems


def test_a_missing_message_page_is_found(site: Path, tmp_path: Path) -> None:
    copy = _copy(site, tmp_path)
    (copy / "messages" / "pong.html").unlink()
    assert message_page_problems(copy) == ["messages/pong.html: missing (message type pong)"]


def test_a_dangling_section_in_the_prose_becomes_a_link_the_check_rejects() -> None:
    targets = LinkTargets(prose="", catalog="requirements.html", code={}, capabilities={})
    document = render("## 1. One\n\nSee §1, §20 and ASP-AUTH-001.", targets, defines_requirements=True)
    assert 'href="#section-1"' in document.html and 'href="#section-20"' in document.html
    assert 'href="#ASP-AUTH-001"' in document.html
    assert 'id="section-1"' in document.html and 'id="section-20"' not in document.html


def test_a_member_list_is_not_taken_for_message_types() -> None:
    targets = LinkTargets(
        prose="", catalog="r.html", code={"message": "m.html", "ping": "p.html"}, capabilities={}
    )
    members = render("`code`, `message`, `retryable`", targets, defines_requirements=False).html
    assert "m.html" not in members, "the error's message member is not the message type"
    prose = render("A `message` whose `conversation_id` is `ping`", targets, defines_requirements=False).html
    assert 'href="m.html"' in prose and 'href="p.html"' in prose


def test_a_scenario_that_breaks_the_spec_is_refused() -> None:
    session = next(s for s in sequences() if s.key == "cancel").steps[1]
    gap = Step("server", frame={"type": "pong", "seq": 5})
    unanswered = Step("client", frame={"type": "ping", "id": "p9"})
    problems = check([Step("connect"), session, unanswered, gap])
    assert any("ASP-ENV-002" in problem for problem in problems), problems
    assert any("ping 'p9' gets no pong" in problem for problem in problems), problems
    assert check([Step("close", code=4999)]) == ["step 1: close code 4999 is not in registry.yaml"]


# --- the command ---------------------------------------------------------------------------------


def test_the_command_builds_and_rebuilds_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "site"
    assert main(["spec", "site", str(out)]) == 0
    (out / "stale.html").write_text("from an earlier build")
    assert main(["spec", "site", str(out)]) == 0
    assert not (out / "stale.html").exists()
    assert "ok:" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["file", "foreign directory"])
def test_an_unusable_out_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("not a directory")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert main(["spec", "site", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert out.is_file() or (out / "notes.txt").read_text() == "mine", "nothing of the user's is touched"
