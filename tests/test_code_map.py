"""The documentation holds together and the code has rooms: every relative link in README.md
and docs/ resolves, the code map (docs/code.md) names every module, no import circle, and no
source file grows past ~400 lines."""

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("fedwsa", "strategies", "clients", "experiments")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in md.read_text().splitlines() if line.startswith("#")}


def broken_links(pages: list[Path]) -> list[str]:
    """``page: link`` for every relative link (file, and #anchor where given) that does not resolve."""
    bad = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code blocks
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{page.name}: {target} (no such heading)")
    return bad


def test_every_relative_link_of_the_readme_and_the_manual_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 9
    assert broken_links(pages) == []


def test_the_link_check_finds_a_broken_link_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n[ok](a.md#title) [gone](b.md) [nohead](a.md#nothing)\n")
    assert broken_links([tmp_path / "a.md"]) == ["a.md: b.md", "a.md: a.md#nothing (no such heading)"]


def named_in(code_map: str, module: Path) -> bool:
    """The map names ``module`` by its path, or on one line by its folder and file name."""
    rel = module.relative_to(ROOT).as_posix()
    if f"`{rel}`" in code_map or f"`{rel}:" in code_map:
        return True
    folder, name = rel.rsplit("/", 1)
    return any(f"`{folder}/`" in line and f"`{name}`" in line for line in code_map.splitlines())


def test_the_code_map_names_every_module():
    text = (ROOT / "docs" / "code.md").read_text()
    code_map = text[text.index("## Code map") :]
    modules = [m for m in _modules() if m.name not in ("__init__.py", "__main__.py")]
    missing = [m.relative_to(ROOT).as_posix() for m in modules if not named_in(code_map, m)]
    assert len(modules) > 60
    assert missing == []


def imports_of(module: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``module`` imports anywhere (in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _name(module: Path) -> str:
    parts = module.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return []


def test_no_import_circle_anywhere():
    modules = {_name(m): m for m in _modules()}
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert graph["experiments.launch.deployment"] >= {"experiments.launch.nodekeys"}
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_source_file_over_400_lines():
    sizes = {m.relative_to(ROOT).as_posix(): len(m.read_text().splitlines()) for m in _modules()}
    assert {m: n for m, n in sizes.items() if n > 400} == {}
