"""The library's shape: no import cycles, no reaching into another module's private names,
and every function-level import says why it is not at the top."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gantrace"


def _module_name(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(module, node):
    """The absolute module an `ImportFrom` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module, top_level_only):
    """(imported module, names, line, is_top_level) for each gantrace import of `module`."""
    tree = ast.parse(MODULES[module].read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        at_top = id(node) in top
        if top_level_only and not at_top:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gantrace"):
                    yield alias.name, [], node.lineno, at_top
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("gantrace"):
                continue
            names = [a.name for a in node.names]
            # `from gantrace.pkg import mod` imports the submodule gantrace.pkg.mod.
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            yield target, [n for n in names if f"{target}.{n}" not in MODULES], node.lineno, at_top
            for sub in subs:
                yield sub, [], node.lineno, at_top


def _graph():
    graph = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _, _ in _imports(module, top_level_only=False):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    """Function-level imports count too: a cycle hidden in a function is still one."""
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _private_imports():
    found = []
    for module in MODULES:
        for target, names, line, _ in _imports(module, top_level_only=False):
            if target == module:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            tail = target.rsplit(".", 1)[-1]
            if tail.startswith("_") and not tail.startswith("__"):
                private.append(tail)
            found += [f"{module}:{line} imports {target}.{n}" for n in private]
    return found


def test_no_module_imports_another_modules_private_names():
    assert _private_imports() == []


def test_function_level_imports_say_why():
    """A gantrace import inside a function keeps a heavy library (torch, matplotlib,
    transformers) out of jobs that do not need it, or breaks a genuine cycle; the line
    before it, or the line itself, says so in a comment."""
    missing = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, _, line, at_top in _imports(module, top_level_only=False):
            if at_top:
                continue
            here, before = lines[line - 1], lines[line - 2] if line > 1 else ""
            if "#" not in here and not before.strip().startswith("#"):
                missing.append(f"{module}:{line}: {here.strip()}")
    if missing:
        pytest.fail("function-level imports without a reason:\n" + "\n".join(sorted(missing)))


# File names that several modules share because each plays the same part in its package.
SAME_PART = {
    "method": {
        "gantrace.membership.method",
        "gantrace.attribution.method",
        "gantrace.subset.method",
    }
}


def test_no_two_modules_share_a_name_with_different_meanings():
    """A file name (a module's or a package's) means one thing across the library, e.g. not
    a `report` package beside a `benchmark_builder/report.py` about something else."""
    by_name = {}
    for module in MODULES:
        if module != "gantrace":
            by_name.setdefault(module.rsplit(".", 1)[-1], set()).add(module)
    shared = {n: sorted(m) for n, m in by_name.items() if len(m) > 1 and m != SAME_PART.get(n)}
    assert shared == {}
