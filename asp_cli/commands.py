"""Registration of the subcommands that live in the other packages."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _reference_server(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from reference_server.cli import register

    register(commands)


def _conformance(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from conformance.cli import register

    register(commands)


def _conformance_client(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from conformance.client.cli import register

    register(commands)


def _loadtests(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from loadtests.cli import register

    register(commands)


REGISTRARS: list[Registrar] = [_reference_server, _conformance, _conformance_client, _loadtests]
