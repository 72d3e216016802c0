"""Structure figures of ``src/otel_resilience`` (the architecture issue's measurements).

Run ``python tools/structure.py`` (``--json`` for machine-readable output). It prints:

- import cycles between the package's modules (strongly connected components of the import
  graph, imports inside functions included, ``if TYPE_CHECKING:`` blocks excluded);
- module-level mutable objects: names bound at module level to a mutable container, a lock,
  a ``ContextVar``-free instance of a non-frozen class, or rebound through ``global``;
- radon's average cyclomatic complexity and the blocks rated C or worse;
- functions longer than 50 lines;
- lines shared by sync/async twins (``f``/``f_async``, ``f_sync``/``f_async``, ``f``/``af``,
  ``_run``/``_run_async``...), after dropping ``async``/``await``;
- the public API size: names in ``otel_resilience.__all__`` and in public subpackages, and
  names in private modules' ``__all__`` that the public tier does not re-export.

``tests/test_architecture.py`` holds the package to the issue's thresholds with these figures.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "otel_resilience"
PACKAGE = "otel_resilience"

_MUTABLE_CALLS = {
    "dict",
    "list",
    "set",
    "bytearray",
    "defaultdict",
    "OrderedDict",
    "deque",
    "Counter",
    "WeakKeyDictionary",
    "WeakValueDictionary",
    "WeakSet",
    "Lock",
    "RLock",
    "Condition",
    "Event",
    "Semaphore",
    "BoundedSemaphore",
    "local",
}
_IMMUTABLE_CALLS = {
    "frozenset",
    "tuple",
    "MappingProxyType",
    "re.compile",
    "compile",
    "TypeVar",
    "ParamSpec",
    "NewType",
    "getLogger",
    "logging.getLogger",
    "ContextVar",
    "contextvars.ContextVar",
    "namedtuple",
    "cast",
    "object",
    "frozen",
    "field",
    "Enum",
}
_LOCKS = {"Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore"}


@dataclass
class Figures:
    modules: int = 0
    import_cycles: list[list[str]] = field(default_factory=list)
    mutable_globals: list[str] = field(default_factory=list)
    module_locks: list[str] = field(default_factory=list)
    radon_average: float = 0.0
    radon_blocks: int = 0
    radon_c_or_worse: list[str] = field(default_factory=list)
    long_functions: list[str] = field(default_factory=list)
    twin_pairs: list[str] = field(default_factory=list)
    twin_shared_lines: int = 0
    public_names: int = 0
    private_all_names: int = 0


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, name: str, is_pkg: bool, known: set[str]) -> set[str]:
    found: set[str] = set()

    def resolve(level: int, mod: str | None) -> str:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, mod] if mod else base)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node.level, node.module) if node.level else node.module or ""
            if target.startswith(PACKAGE):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in known else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return {m for m in found if m in known}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _call_name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _mutable_kind(value: ast.expr | None, classes: dict[str, bool]) -> str | None:
    """'lock', 'mutable' or None for a module-level value."""
    if value is None:
        return None
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return "mutable"
    if isinstance(value, ast.Call):
        full = _call_name(value.func)
        short = full.rsplit(".", 1)[-1]
        if full in _IMMUTABLE_CALLS or short in _IMMUTABLE_CALLS:
            return None
        if short in _LOCKS:
            return "lock"
        if short in _MUTABLE_CALLS:
            return "mutable"
        if short in classes:
            return None if classes[short] else "mutable"
    return None


def _frozen_classes(tree: ast.Module) -> dict[str, bool]:
    """A module's classes: name -> whether instances are immutable (frozen, Enum, NamedTuple)."""
    out: dict[str, bool] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        frozen = any(
            _call_name(b) in {"Enum", "IntEnum", "StrEnum", "NamedTuple", "Exception"}
            for b in node.bases
        )
        for item in node.body:  # ``__slots__ = ()``: instances hold no state (a sentinel)
            if (
                isinstance(item, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets)
                and isinstance(item.value, ast.Tuple)
                and not item.value.elts
            ):
                frozen = True
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call):
                for kw in deco.keywords:
                    if kw.arg == "frozen" and isinstance(kw.value, ast.Constant) and kw.value.value:
                        frozen = True
        out[node.name] = frozen
    return out


def _globals(tree: ast.Module, mod: str, classes: dict[str, bool]) -> tuple[list[str], list[str]]:
    mutable: list[str] = []
    locks: list[str] = []
    rebound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            rebound.update(node.names)
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        for t in targets:
            if not isinstance(t, ast.Name) or t.id == "__all__":
                continue
            kind = _mutable_kind(value, classes)
            if kind == "lock":
                locks.append(f"{mod}.{t.id}")
            elif kind == "mutable" or t.id in rebound:
                mutable.append(f"{mod}.{t.id}")
    for name in sorted(rebound):
        qual = f"{mod}.{name}"
        if qual not in mutable and qual not in locks:
            mutable.append(qual)
    return mutable, locks


def _norm(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        s = line.strip().replace("await ", "").replace("async ", "")
        if s and not s.startswith("#"):
            out.append(s)
    return out


def _twins(funcs: dict[str, ast.AST], source: list[str], mod: str) -> tuple[list[str], int]:
    pairs: list[str] = []
    shared = 0
    names = set(funcs)
    seen: set[tuple[str, str]] = set()
    for name in sorted(names):
        candidates = []
        base = name.split(".")[-1]
        prefix = name[: len(name) - len(base)]
        if base.endswith("_async"):
            stem = base[: -len("_async")]
            candidates += [stem, f"{stem}_sync"]
        if (
            base.startswith("a")
            and f"{prefix}{base[1:]}" in names
            and isinstance(funcs[name], ast.AsyncFunctionDef)
        ):
            candidates.append(base[1:])
        if base.startswith("_a") and isinstance(funcs[name], ast.AsyncFunctionDef):
            candidates.append("_" + base[2:])
        for cand in candidates:
            other = f"{prefix}{cand}"
            if other in names and (other, name) not in seen:
                seen.add((other, name))
                a, b = funcs[other], funcs[name]
                la = _norm(source[a.lineno - 1 : a.end_lineno])  # type: ignore[attr-defined]
                lb = _norm(source[b.lineno - 1 : b.end_lineno])  # type: ignore[attr-defined]
                matcher = difflib.SequenceMatcher(None, la, lb, autojunk=False)
                same = sum(block.size for block in matcher.get_matching_blocks())
                if same >= 3:
                    pairs.append(f"{mod}.{other} ~ {name}: {same} lines")
                    shared += same
    return pairs, shared


def _functions(tree: ast.Module) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[prefix + child.name] = child
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def _all_names(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                return list(ast.literal_eval(node.value))
            except ValueError:
                return []
    return []


def _radon(files: list[Path], fig: Figures) -> None:
    try:
        from radon.complexity import cc_rank, cc_visit
    except ImportError:  # pragma: no cover - radon is a dev dependency
        fig.radon_average = float("nan")
        return
    total = 0
    count = 0
    for path in files:
        for block in cc_visit(path.read_text()):
            for item in [block]:  # cc_visit lists methods on their own too
                total += item.complexity
                count += 1
                if cc_rank(item.complexity) >= "C":
                    fig.radon_c_or_worse.append(
                        f"{module_name(path)}:{item.lineno} {item.name}"
                        f" {cc_rank(item.complexity)} ({item.complexity})"
                    )
    fig.radon_blocks = count
    fig.radon_average = round(total / count, 2) if count else 0.0


def measure(root: Path = ROOT) -> Figures:
    fig = Figures()
    files = sorted(p for p in root.rglob("*.py"))
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    public_all: set[str] = set()
    private_all: set[str] = set()
    for path in files:
        mod = module_name(path)
        text = path.read_text()
        tree = ast.parse(text)
        graph[mod] = _imports(tree, mod, path.name == "__init__.py", known)
        classes = _frozen_classes(tree)
        mutable, locks = _globals(tree, mod, classes)
        fig.mutable_globals += mutable
        fig.module_locks += locks
        funcs = _functions(tree)
        lines = text.splitlines()
        for qual, node in funcs.items():
            length = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
            if length > 50:
                fig.long_functions.append(f"{mod}.{qual}: {length} lines")
        pairs, shared = _twins(funcs, lines, mod)
        fig.twin_pairs += pairs
        fig.twin_shared_lines += shared
        names = _all_names(tree)
        private = any(part.startswith("_") and part != "__init__" for part in mod.split("."))
        (private_all if private else public_all).update(f"{n}" for n in names)
    fig.modules = len(files)
    fig.import_cycles = _cycles(graph)
    fig.public_names = len(public_all)
    fig.private_all_names = len(private_all - public_all)
    _radon(files, fig)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("root", nargs="?", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    fig = measure(args.root)
    if args.json:
        print(json.dumps(asdict(fig), indent=2))
        return 0
    print(f"modules: {fig.modules}")
    print(f"import cycles: {len(fig.import_cycles)}")
    for cyc in fig.import_cycles:
        print(f"  {' <-> '.join(cyc)}")
    print(
        f"module-level mutable objects: {len(fig.mutable_globals)}"
        f" (+ {len(fig.module_locks)} module locks)"
    )
    for name in fig.mutable_globals + fig.module_locks:
        print(f"  {name}")
    print(f"radon average complexity: {fig.radon_average} over {fig.radon_blocks} blocks")
    print(f"blocks rated C or worse: {len(fig.radon_c_or_worse)}")
    for item in fig.radon_c_or_worse:
        print(f"  {item}")
    print(f"functions over 50 lines: {len(fig.long_functions)}")
    for item in fig.long_functions:
        print(f"  {item}")
    print(f"sync/async twin lines: {fig.twin_shared_lines} in {len(fig.twin_pairs)} pairs")
    for item in fig.twin_pairs:
        print(f"  {item}")
    print(
        f"public API: {fig.public_names} names;"
        f" private modules' __all__ not re-exported: {fig.private_all_names}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
