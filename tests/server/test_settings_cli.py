"""The `asp serve` flags and the README's settings table come from the settings model and match it."""

from __future__ import annotations

import pytest

from asp_cli.main import build_parser
from reference_server.cli import SERVE_DEFAULTS
from reference_server.config import Settings
from reference_server.settings_cli import (
    README,
    env_name,
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
