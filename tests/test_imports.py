"""The layers keep to their rooms (issue 9): read every domain package's imports and check
what each kind of module may know. A domain is a package under server/ with a handlers.py."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server"
DOMAINS = sorted(p.parent.name for p in SERVER.glob("*/handlers.py"))
STDLIB = set(sys.stdlib_module_names)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute ("aiohttp.web") or resolved against server/
    ("server.errors", "server.events.models")."""
    package = ["server", *path.relative_to(SERVER).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            if not node.module:  # "from . import service"
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def test_every_domain_is_found() -> None:
    assert {"events", "feed", "notifications", "users"} <= set(DOMAINS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_has_the_same_rooms(domain: str) -> None:
    rooms = {p.name for p in (SERVER / domain).glob("*.py")}
    assert {"handlers.py", "schemas.py", "service.py", "repository.py", "models.py"} <= rooms


@pytest.mark.parametrize("domain", DOMAINS)
def test_handlers_import_neither_asyncpg_nor_redis(domain: str) -> None:
    used = {top(m) for m in imports_of(SERVER / domain / "handlers.py")}
    assert not used & {"asyncpg", "redis"}


@pytest.mark.parametrize("domain", DOMAINS)
def test_services_know_no_http(domain: str) -> None:
    used = imports_of(SERVER / domain / "service.py")
    assert "aiohttp" not in {top(m) for m in used}
    assert not {m for m in used if m.endswith(".handlers") or m == "server.http"}


@pytest.mark.parametrize("domain", DOMAINS)
def test_repositories_import_nothing_from_aiohttp_or_errors(domain: str) -> None:
    used = imports_of(SERVER / domain / "repository.py")
    assert "aiohttp" not in {top(m) for m in used}
    assert "server.errors" not in used


@pytest.mark.parametrize("domain", DOMAINS)
def test_schemas_import_nothing_of_the_app_but_fields_and_models(domain: str) -> None:
    allowed = {"server.fields", f"server.{domain}.models"}
    for module in imports_of(SERVER / domain / "schemas.py"):
        if top(module) == "server":
            assert module in allowed, module
        else:
            assert top(module) in STDLIB | {"marshmallow"}, module


@pytest.mark.parametrize("module", ["broker.py", "streams.py", "wire.py", "watch.py"])
def test_the_fan_out_knows_no_handler(module: str) -> None:
    used = imports_of(SERVER / module)
    assert not {m for m in used if m.endswith(".handlers") or m in {"server.http", "server.sse"}}
