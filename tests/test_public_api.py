"""The public API is what four packages export, and docs/api.md lists exactly those names."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "k8s_otel"
PUBLIC_PACKAGES = ("k8s_otel", "k8s_otel.webhook", "k8s_otel.instrumentation", "k8s_otel.objects")
# The command line is public as a command, not as an import: its package exports only main().
CLI = "k8s_otel.cli"


def _modules() -> list[str]:
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _declared_all(module: str) -> list[str] | None:
    path = SOURCE.parent.joinpath(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.parse(file.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    return None


def _documented(text: str | None = None) -> dict[str, list[str]]:
    """``## `package` `` headings, each followed by ``- `name`: ...`` lines."""
    if text is None:
        text = (ROOT / "docs" / "api.md").read_text()
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.fullmatch(r"## `([\w.]+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
            continue
        entry = re.match(r"- `(\w+)`: \S", line)
        if entry:
            assert current is not None, f"{line!r} comes before any package heading"
            current.append(entry.group(1))
    return sections


def test_every_module_outside_the_public_packages_is_private() -> None:
    public = []
    for module in _modules():
        if module in (*PUBLIC_PACKAGES, CLI) or module == "k8s_otel.__main__":
            continue
        if not any(part.startswith("_") for part in module.split(".")[1:]):
            public.append(module)
    assert public == []


@pytest.mark.parametrize("module", _modules())
def test_every_module_declares_all_and_each_name_exists(module: str) -> None:
    if module == "k8s_otel.__main__":
        return
    declared = _declared_all(module)
    assert declared is not None, f"{module} has no __all__"
    assert len(declared) == len(set(declared)), f"{module}.__all__ names something twice"
    loaded = importlib.import_module(module)
    missing = [name for name in declared if not hasattr(loaded, name)]
    assert missing == []


def test_the_cli_package_exports_only_main() -> None:
    assert _declared_all(CLI) == ["main"]


def test_docs_api_lists_exactly_the_public_names() -> None:
    documented = _documented()
    assert sorted(documented) == sorted(PUBLIC_PACKAGES)
    for package in PUBLIC_PACKAGES:
        names = documented[package]
        assert len(names) == len(set(names)), f"docs/api.md lists a name twice under {package}"
        assert sorted(names) == sorted(importlib.import_module(package).__all__), package


def test_the_page_parser_sees_every_entry_and_no_prose() -> None:
    page = "## `k8s_otel`\n\nProse with `configure` in it.\n- `configure`: builds.\n- `ghost`: gone.\n- `bare`:\n"
    assert _documented(page) == {"k8s_otel": ["configure", "ghost"]}


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_public_packages_load_their_exports_lazily(package: str) -> None:
    loaded = importlib.import_module(package)
    with pytest.raises(AttributeError):
        loaded.no_such_name  # noqa: B018
    for name in loaded.__all__:
        assert getattr(loaded, name) is getattr(loaded, name)


def test_the_library_and_every_public_name_load_without_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "public_api_probe.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))},
    )
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "k8s_otel._wiring" in modules  # the probe really configured the library
    assert [name for name in modules if name == CLI or name.startswith(CLI + ".")] == []


def test_examples_and_docs_import_only_public_names() -> None:
    private = re.compile(r"(?:from|import) (k8s_otel(?:\.\w+)*\._\w+)")
    found = []
    for path in [
        *sorted((ROOT / "examples").rglob("*.py")),
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]:
        found += [f"{path.name}: {match}" for match in private.findall(path.read_text())]
    assert found == []
