"""House rules, by folder: imports point down (bench -> bot -> index), only the Discord package
imports discord, the engine imports neither Discord, the CLI nor evaluation, inference never
imports training, no import circles, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400  # "split a module before it passes ~400 lines"
TRAINING = ("index.reader.training", "index.reader.squad", "index.reader.card")


def modules(folder: str) -> dict[str, Path]:
    """{dotted name: path} of every module under `folder` (bot or index)."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Dotted names a module imports (`from a.b import c` gives a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


CODE = {**modules("bot"), **modules("index")}


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def inside(*packages: str) -> set[str]:
    return {n for n in CODE if under(n, *packages)}


def offenders(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{name} imports {sorted(i for i in imports(CODE[name]) if under(i, *forbidden))}"
        for name in sorted(names)
        if any(under(i, *forbidden) for i in imports(CODE[name]))
    ]


def test_index_never_imports_bot_nor_bench():
    assert offenders(inside("index"), ("bot", "bench", "tests", "discord")) == []


def test_only_the_discord_package_imports_discord():
    assert offenders(CODE.keys() - inside("bot.app"), ("discord",)) == []
    assert all(
        "discord" in {i.split(".")[0] for i in imports(p)}
        for p in modules("bot/app/exts").values()
        if p.name != "__init__.py"
    )


def test_the_engine_never_imports_discord_the_cli_or_evaluation():
    assert offenders(inside("bot.engine"), ("bot.app", "bot.cli", "bot.evaluate", "argparse")) == []


def test_the_client_and_the_features_do_not_import_each_other():
    assert offenders(inside("bot.app.client"), ("bot.app.exts",)) == []
    assert offenders(inside("bot.app.exts"), ("bot.app.client",)) == []
    assert offenders(inside("bot"), ("bench", "tests")) == []


def test_inference_never_imports_training():
    running = CODE.keys() - inside(*TRAINING, "bot.evaluate", "bot.cli")
    assert offenders(running, TRAINING) == []


def test_no_import_circles():
    graph = {n: {i for i in imports(p) if i in CODE and i != n} for n, p in CODE.items()}
    for name in graph:  # a package's face imports its modules: count them as the package's
        graph[name] -= {n for n in graph if n.startswith(name + ".")}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
    assert circles == []


def test_no_module_is_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in CODE.items()}
    assert {n: lines for n, lines in long.items() if lines > MAX_LINES} == {}


def test_tests_mirror_the_packages():
    for folder in ("bot/engine", "bot/app", "index/web", "index/reader"):
        assert list((ROOT / "tests" / folder).glob("test_*.py")), folder
