"""The `asp serve` flags and the README's settings table come from the settings model and match it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from asp_cli.main import build_parser
from reference_server.cli import SERVE_DEFAULTS
from reference_server.config import ENV_PREFIX, Settings, env_name, env_sets, without_settings
from reference_server.launch import setting_problems
from reference_server.settings_cli import (
    README,
    flag_name,
    overrides,
    readme_with_table,
    settings_fields,
)


def test_the_readme_table_is_the_generated_one():
    readme = README.read_text()
    assert readme_with_table(readme) == readme, (
        "README's settings table drifted from reference_server/config.py: "
        "run `python -m reference_server.settings_cli --write`"
    )


def test_every_setting_is_described_and_in_the_readme():
    readme = README.read_text()
    for name, info in settings_fields().items():
        assert info.description, f"{name} has no description (it is the flag's help and the README's meaning)"
        assert f"`{env_name(name)}`" in readme and f"`{flag_name(name)}" in readme


def serve_help() -> str:
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]


def test_every_setting_is_an_asp_serve_flag():
    text = serve_help()
    for name in settings_fields():
        assert flag_name(name) in text, name
    for flag in ["--coalesce-ms", "--send-timeout-ms", "--history-cache-size", "--log-json", "--tracing"]:
        assert flag in text  # the flags the README promised and asp serve lacked (issue 15)


def test_flags_parse_to_settings_of_their_type_and_win_over_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASP_COALESCE_MS", "9")
    monkeypatch.setenv("ASP_FIXTURES", "false")
    args = build_parser().parse_args(
        ["serve", "--coalesce-ms", "0.5", "--no-access-log", "--log-json", "--history-cache-size", "0"]
    )
    settings = Settings(**overrides(args, SERVE_DEFAULTS))
    assert settings.coalesce_ms == 0.5 and settings.history_cache_size == 0
    assert settings.access_log is False and settings.log_json is True
    assert settings.fixtures is False  # asp serve's default (fixtures on) yields to ASP_FIXTURES
    monkeypatch.delenv("ASP_FIXTURES")
    plain = Settings(**overrides(build_parser().parse_args(["serve"]), SERVE_DEFAULTS))
    assert plain.fixtures is True and plain.coalesce_ms == 9


def test_other_asp_commands_do_not_build_the_serve_flags():
    """The flags are generated when `asp serve` is parsed, so `asp spec validate` stays fast."""
    import subprocess
    import sys

    probe = (
        "import sys; from asp_cli.main import build_parser"
        "; build_parser().parse_args(['spec', 'validate', '-'])"
        "; print('pydantic_settings' in sys.modules)"
    )
    command = [sys.executable, "-c", probe]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_a_missing_database_driver_names_the_extra_that_installs_it(monkeypatch: pytest.MonkeyPatch):
    from reference_server import stores

    requires = ["redis>=5", 'asyncpg>=0.29; extra == "postgres"']
    monkeypatch.setattr(stores.importlib.metadata, "requires", lambda name: requires)
    assert stores.install_hint("asyncpg") == "pip install 'agent-stream-protocol[postgres]'"
    assert stores.install_hint("aiomysql") == "pip install aiomysql"


REPO = Path(__file__).resolve().parents[2]
# A settings variable's name spelled out with the prefix computed around it: f"ASP_{...}",
# "ASP_" + ..., startswith("ASP_"), removeprefix("ASP_").
COMPUTED_NAME = re.compile(r"""f?["']ASP_(\{|["'])""")


def test_every_setting_is_read_from_its_env_name(monkeypatch: pytest.MonkeyPatch):
    """`env_name` is the variable `Settings` reads, and the name a setting's problem is reported by."""
    assert Settings.model_config.get("env_prefix") == ENV_PREFIX == "ASP_"
    assert env_name("jwt_secret") == "ASP_JWT_SECRET"
    monkeypatch.setenv(env_name("max_connections"), "7")
    monkeypatch.setenv(env_name("path"), "/from-env")
    settings = Settings()
    assert settings.max_connections == 7 and settings.path == "/from-env"
    monkeypatch.setenv(env_name("max_connections"), "0")
    with pytest.raises(ValidationError) as raised:
        Settings()
    problems = setting_problems(raised.value)
    assert [line.split(":")[0] for line in problems] == [f"{env_name('max_connections')} (--max-connections)"]


def test_without_settings_drops_every_name_the_settings_read_in_any_case():
    """pydantic-settings matches variable names case-insensitively: `asp_model` sets `model` as
    `ASP_MODEL` does, so both go; names that merely resemble the prefix stay."""
    environ = {
        "ASP_MODEL": "openai:gpt-4o",
        "asp_redis_url": "redis://elsewhere",
        "Asp_Path": "/x",
        "ASPECT": "kept",
        "HOME": "/home/someone",
        "MY_ASP_PORT": "1",
    }
    assert without_settings(environ) == {"ASPECT": "kept", "HOME": "/home/someone", "MY_ASP_PORT": "1"}
    assert environ["ASP_MODEL"] == "openai:gpt-4o"  # a copy: the environment given is left as it was


def test_env_sets_finds_a_settings_variable_in_any_case():
    """`env_sets` answers as pydantic-settings reads: the name in any case, only the whole name."""
    assert env_sets("fixtures", {"ASP_FIXTURES": "false"})
    assert env_sets("fixtures", {"asp_fixtures": "false"})
    assert env_sets("fixtures", {"Asp_Fixtures": ""})
    assert not env_sets("fixtures", {"ASP_FIXTURES_X": "1", "MY_ASP_FIXTURES": "1", "FIXTURES": "1"})


def test_a_lower_case_variable_wins_over_asp_serves_default(monkeypatch: pytest.MonkeyPatch):
    """`asp serve` turns fixtures on unless a variable sets them: a lower-case `asp_fixtures`,
    which `Settings` reads, counts as the upper-case one does."""
    for name in [key for key in os.environ if key.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("asp_fixtures", "false")
    settings = Settings(**overrides(build_parser().parse_args(["serve"]), SERVE_DEFAULTS))
    assert settings.fixtures is False


async def test_a_server_started_from_a_shell_with_stray_settings_runs_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The suite's servers start from this process's environment without its settings
    (`without_settings`): a lower-case `asp_path` in the shell, which the server would read as its
    path, does not move the endpoint. A real server and a real WebSocket on its /ws/chat."""
    from conformance.wire import AspClient
    from tests.support.server import ServerProcess

    monkeypatch.setenv("asp_path", "/elsewhere")
    server = ServerProcess(database=tmp_path / "asp.db").start()
    try:
        assert server.url.endswith("/ws/chat"), server.url
        client = await AspClient.open(server.url, token=server.token("stray"))
        assert (await client.expect("session"))["session_id"].startswith("ses_")
        await client.close()
    finally:
        server.stop()


def test_the_settings_prefix_is_written_out_only_in_config():
    """One home for the prefix (reference_server.config): a variable's name is `env_name(field)`, an
    environment without settings `without_settings(environ)`. The minimal server in examples/ is
    independent of the reference server and reads its own names."""
    places = [REPO / name for name in ("reference_server", "asp_cli", "conformance", "loadtests", "tests")]
    found = []
    for place in places:
        for path in sorted(place.rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative.parts[:2] == ("tests", "examples") or path == Path(__file__).resolve():
                continue
            if relative == Path("reference_server/config.py"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if COMPUTED_NAME.search(line):
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert found == [], "computed ASP_ names outside reference_server/config.py:\n" + "\n".join(found)
