"""House rule: only the Discord layer imports discord; index/ never imports bot/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISCORD_LAYER = {
    "bot/app.py",
    "bot/render.py",
    "bot/render_admin.py",
    "bot/cogs/ask.py",
    "bot/cogs/admin.py",
    "bot/cogs/handoff.py",
    "bot/cogs/insights.py",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_discord_layer_imports_discord():
    modules = sorted((ROOT / "bot").rglob("*.py")) + sorted((ROOT / "index").rglob("*.py"))
    offenders = [
        str(p.relative_to(ROOT))
        for p in modules
        if "discord" in imports(p) and str(p.relative_to(ROOT)) not in DISCORD_LAYER
    ]
    assert offenders == []
    assert all("discord" in imports(ROOT / p) for p in DISCORD_LAYER)


def test_index_never_imports_bot():
    assert [p.name for p in (ROOT / "index").rglob("*.py") if "bot" in imports(p)] == []
