"""The apps depend one way (docs/architecture.md), and no module imports itself back, lazy imports included.

Every `import` in the project's code counts, at module level or inside a function: a lazy import hides
a dependency, it does not remove it.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: an app may import the project package `beacon` and the apps before it, never one after.
LAYERS = ("accounts", "profiles", "deliveries", "tracking", "audiences", "reporting", "webhooks", "demo")
PROJECT_PACKAGE = "beacon"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for package in (PROJECT_PACKAGE, *LAYERS):
        for path in (root / package).rglob("*.py") if (root / package).is_dir() else ():
            modules[module_name(path, root)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports (a `from package import module` names the module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def app_of(module: str) -> str:
    return module.partition(".")[0]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    rank = {app: index for index, app in enumerate(LAYERS)}
    rank[PROJECT_PACKAGE] = -1
    found = []
    for module, targets in graph.items():
        for target in targets:
            if module.startswith(f"{PROJECT_PACKAGE}.") or module == PROJECT_PACKAGE:
                if app_of(target) != PROJECT_PACKAGE:
                    found.append(f"{module} imports {target}: the project package imports no app")
            elif rank[app_of(target)] > rank[app_of(module)]:
                found.append(f"{module} imports {target}: {app_of(module)} must not depend on {app_of(target)}")
    return sorted(found)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_apps_import_only_the_apps_below_them():
    assert layer_violations(import_graph(ROOT)) == []


def test_no_import_cycles():
    assert import_cycles(import_graph(ROOT)) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_a_lazy_import_of_a_higher_app_is_a_violation(tmp_path):
    _write(tmp_path, {
        "beacon/__init__.py": "",
        "profiles/__init__.py": "",
        "profiles/services.py": "def f():\n    from reporting.selectors import g\n",
        "reporting/__init__.py": "",
        "reporting/selectors.py": "from profiles import services\n",
    })
    assert layer_violations(import_graph(tmp_path)) == [
        "profiles.services imports reporting.selectors: profiles must not depend on reporting"
    ]


def test_a_lazy_circle_through_a_package_is_a_cycle(tmp_path):
    _write(tmp_path, {
        "beacon/__init__.py": "",
        "tracking/__init__.py": "",
        "tracking/tasks.py": "from tracking import services\n",
        "tracking/services.py": "from .ingest import store\n",
        "tracking/ingest/__init__.py": "",
        "tracking/ingest/store.py": "def queue():\n    from tracking.tasks import parse\n",
    })
    assert import_cycles(import_graph(tmp_path)) == [["tracking.ingest.store", "tracking.services", "tracking.tasks"]]
