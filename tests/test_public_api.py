"""The public namespace: one flat, sorted ``__all__``; decorators keep signatures and types."""

from __future__ import annotations

import ast
import inspect
import os
import pickle
import re
import subprocess
import sys
import traceback
import typing
from pathlib import Path

import pytest

import otel_resilience
from otel_resilience import configure, create_retry_decorator, resilient
from support import FakeClock


def test_all_is_sorted_and_matches_the_public_names() -> None:
    public = {name for name in dir(otel_resilience) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(otel_resilience, name))}
    assert otel_resilience.__all__ == sorted(otel_resilience.__all__)
    assert set(otel_resilience.__all__) - {"__version__"} == public - modules


def test_the_seed_and_design_names_are_exported() -> None:
    for name in [
        "resilient_call", "create_retry_decorator", "with_timeout", "map_external_error",
        "ReliabilityError", "ExternalServiceError", "ReliabilityConfig", "CircuitBreaker",
        "CircuitBreakerState", "get_circuit_breaker_manager", "resilient_call_async",
        "resilient", "configure_telemetry",
    ]:  # fmt: skip
        assert name in otel_resilience.__all__, name


def test_no_tenacity_or_opentelemetry_type_in_public_signatures() -> None:
    for name in otel_resilience.__all__:
        obj = getattr(otel_resilience, name)
        if callable(obj):
            try:
                text = str(inspect.signature(obj))
            except (TypeError, ValueError):
                continue
            assert "tenacity" not in text, name
            assert "opentelemetry" not in text, name


def test_resilient_keeps_name_doc_and_arguments(clock: FakeClock) -> None:
    @resilient("gcs", "download", max_retries=2)
    def download(path: str, *, offset: int = 0) -> bytes:
        """Download a file."""
        return f"{path}@{offset}".encode()

    assert download("a", offset=3) == b"a@3"
    assert download.__name__ == "download"
    assert download.__doc__ == "Download a file."
    assert list(inspect.signature(download).parameters) == ["path", "offset"]


def test_decorated_function_is_retried(clock: FakeClock) -> None:
    calls = 0

    @create_retry_decorator("svc", "op", max_retries=3)
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError()
        return "ok"

    assert flaky() == "ok"
    assert calls == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_sec": 0}, "timeout_sec"),
        ({"max_retries": -2}, "max_retries"),
        ({"deadline_sec": -1}, "deadline_sec"),
        ({"retries": 3}, "unknown option"),
    ],
    ids=["timeout", "retries", "deadline", "unknown"],
)
def test_decorator_options_are_checked_at_decoration_time(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        resilient("svc", "op", **kwargs)


def test_decorating_a_non_callable_is_an_error() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        resilient("svc", "op")(42)  # type: ignore[call-overload]


def test_configure_then_reset_restores_defaults() -> None:
    configure(services={"svc": {"HTTP_RETRIES": 9}})
    assert otel_resilience.get_config("svc").HTTP_RETRIES == 9
    otel_resilience.reset()
    assert otel_resilience.get_config("svc").HTTP_RETRIES == 3


# --- one public tier -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "otel_resilience"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(\S+)\s+import\s+(.+)|import\s+(.+))$")


def _private_in_import_line(line: str) -> list[str]:
    """The private ``otel_resilience`` modules a ``from``/``import`` line names."""
    match = _IMPORT_LINE.match(line.strip().strip("`"))
    if match is None:
        return []
    source, names, plain = match.groups()
    if plain is not None:
        modules = [part.split(" as ")[0].strip() for part in plain.split(",")]
    elif source == "otel_resilience":
        modules = [f"otel_resilience.{n.split(' as ')[0].strip(' ()')}" for n in names.split(",")]
    else:
        modules = [source]
    return [m for m in modules if _is_private_module(m)]


def _is_private_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "otel_resilience" and any(part.startswith("_") for part in parts[1:])


def _private_in_python(source: str, filename: str) -> list[str]:
    """Private ``otel_resilience`` modules imported or reached (``otel_resilience._x``) by code.

    A block that is not Python on its own (a signature, an excerpt) is checked line by line.
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        return [m for line in source.splitlines() for m in _private_in_import_line(line)]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_private_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _is_private_module(node.module):
                found.append(node.module)
            else:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                found += [name for name in names if _is_private_module(name)]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "otel_resilience"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"otel_resilience.{node.attr}")
    return found


@pytest.mark.parametrize(
    ("line", "private"),
    [
        ("from otel_resilience._timeout import deadline_scope", ["otel_resilience._timeout"]),
        ("from otel_resilience import _mapping", ["otel_resilience._mapping"]),
        ("import otel_resilience._redis as r", ["otel_resilience._redis"]),
        ("`from otel_resilience.demo._view import LiveView`", ["otel_resilience.demo._view"]),
        ("from otel_resilience import deadline_scope, resilient_call", []),
        ("import otel_resilience", []),
        ("from otel_resilience.demo import DemoRunner", []),
        ("from os import _exit", []),
    ],
    ids=["from-private", "import-private-name", "import-as", "subpackage", "root", "plain",
         "public-subpackage", "other-package"],
)  # fmt: skip
def test_the_import_line_check_finds_private_modules(line: str, private: list[str]) -> None:
    assert _private_in_import_line(line) == private
    assert _private_in_python(line.strip("`"), "<line>") == private


def test_the_code_check_finds_attribute_access_to_a_private_module() -> None:
    assert _private_in_python("otel_resilience._redis.close_stores()", "<x>") == [
        "otel_resilience._redis"
    ]
    assert _private_in_python("otel_resilience.__version__", "<x>") == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_the_docs_import_no_private_module(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if _private_in_import_line(line)
    ]
    for index, block in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)):
        found += _private_in_python(block, f"{path.name}[block {index}]")
    assert found == []


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_the_docstring_examples_import_no_private_module(path: Path) -> None:
    """What ``>>>`` examples show users is what they copy: only the public API."""
    found = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip().startswith(">>> ")
        and (
            _private_in_import_line(line.strip()[4:])
            or _private_in_python(line.strip()[4:], f"{path.name}:{number}")
        )
    ]
    assert found == []


def _cli_and_demo_files() -> list[Path]:
    return [PACKAGE / "cli.py", *sorted((PACKAGE / "demo").glob("*.py"))]


def _imported_modules(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ["otel_resilience"] + (["demo"] if path.parent.name == "demo" else [])
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # ``from .. import X``: X is a name of the package, or a submodule when private
            private = [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
            modules += [module] if node.module else [module, *private]
    return modules


@pytest.mark.parametrize("path", _cli_and_demo_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_cli_and_the_demo_use_only_the_public_api(path: Path) -> None:
    """The CLI imports the root and ``otel_resilience.demo``; the demo's modules import the root
    and each other, never a private module of the library."""
    modules = [m for m in _imported_modules(path) if m.split(".")[0] == "otel_resilience"]
    own = "otel_resilience.demo." if path.parent.name == "demo" else None
    private = [m for m in modules if _is_private_module(m) and not (own and m.startswith(own))]
    assert private == []


def test_imported_modules_resolves_relative_imports() -> None:
    runner = _imported_modules(PACKAGE / "demo" / "_runner.py")
    assert "otel_resilience" in runner
    assert "otel_resilience.demo._stats" in runner
    assert "otel_resilience" in _imported_modules(PACKAGE / "cli.py")


def test_imported_modules_sees_private_modules_reached_from_the_demo(tmp_path: Path) -> None:
    module = tmp_path / "demo" / "_x.py"
    module.parent.mkdir()
    module.write_text(
        "from .. import _breaker, CircuitBreaker\n"
        "from .._health import x\n"
        "from ._stats import Row\n"
    )
    assert _imported_modules(module) == [
        "otel_resilience",
        "otel_resilience._breaker",
        "otel_resilience._health",
        "otel_resilience.demo._stats",
    ]


def _public_objects() -> list[tuple[str, object]]:
    return [(name, getattr(otel_resilience, name)) for name in otel_resilience.__all__]


@pytest.mark.parametrize(("name", "obj"), _public_objects(), ids=list(otel_resilience.__all__))
def test_every_public_name_shows_the_root_module_and_has_a_docstring(
    name: str, obj: object
) -> None:
    if name == "__version__":
        assert isinstance(obj, str)
        return
    assert getattr(obj, "__module__", "otel_resilience") == "otel_resilience"
    assert inspect.getdoc(obj), f"{name} has no docstring"


@pytest.mark.parametrize(("name", "obj"), _public_objects(), ids=list(otel_resilience.__all__))
def test_type_hints_of_every_public_name_still_resolve(name: str, obj: object) -> None:
    """``__module__`` now names the root, where the private modules' typing names are not:
    ``typing.get_type_hints`` (dataclass tools, cattrs, pydantic) must still work."""
    if not (isinstance(obj, type) or inspect.isfunction(obj)):
        return
    targets = [obj]
    if isinstance(obj, type):
        targets += [m for m in vars(obj).values() if inspect.isfunction(m)]
    for target in targets:
        typing.get_type_hints(target, include_extras=True)
    if isinstance(obj, type) and "__annotations__" in vars(obj):
        assert not any(isinstance(v, str) for v in vars(obj)["__annotations__"].values())


def test_the_config_field_types_resolve_to_the_real_types() -> None:
    hints = typing.get_type_hints(otel_resilience.ReliabilityConfig)
    assert hints["HTTP_RETRIES"] is int
    assert hints["CB_MODE"] == typing.Literal["consecutive", "count", "time"]


def test_a_config_error_traceback_names_the_root_module() -> None:
    with pytest.raises(otel_resilience.ConfigError) as caught:
        configure(services={"svc": {"HTTP_RETRY": 5}})
    assert traceback.format_exception_only(caught.value)[-1].startswith(
        "otel_resilience.ConfigError: unknown setting(s) HTTP_RETRY"
    )
    assert repr(otel_resilience.ReliabilityError).startswith("<class 'otel_resilience.")


def test_no_private_module_has_an_all_list() -> None:
    """One tier: the public names are the root's ``__all__`` (and the demo package's)."""
    having = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(
            part.startswith("_") and part != "__init__.py"
            for part in path.relative_to(PACKAGE).parts
        )
        and any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    ]
    assert having == []


def _error_instances() -> list[BaseException]:
    from otel_resilience import (
        AttemptTimeout,
        CallTimeoutError,
        CircuitOpenError,
        ConfigError,
        ExternalServiceError,
        ReliabilityError,
        ThrottledError,
    )

    return [
        ReliabilityError(
            ExternalServiceError.SERVER_ERROR, "gcs", "upload", "boom", attempts=3, retry_after=2.5
        ),
        CircuitOpenError(service_name="gcs", endpoint="upload", retry_after=4.0),
        ThrottledError(service_name="openai", endpoint="chat"),
        CallTimeoutError(ExternalServiceError.TIMEOUT, "clamav", "scan", "slow", attempts=2),
        ConfigError("CB_RESET_SEC=-1 is not accepted"),
        AttemptTimeout("Function f timed out after 0.5 seconds", 0.5),
    ]


@pytest.mark.parametrize("error", _error_instances(), ids=lambda e: type(e).__name__)
def test_public_exceptions_survive_pickling_with_their_fields(error: BaseException) -> None:
    data = pickle.dumps(error)
    assert b"otel_resilience\n" in data or b"\x8c\x0fotel_resilience\x94" in data
    assert b"otel_resilience._" not in data  # pickled by the public name
    copy = pickle.loads(data)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy) == repr(error)
    fields = ("error_type", "service_name", "endpoint", "attempts", "retry_after", "timeout_sec")
    for field in fields:
        assert getattr(copy, field, None) == getattr(error, field, None), field


_CHILD = """
import pickle, sys
import otel_resilience
try:
    otel_resilience.resilient_call(
        "gcs", "upload", lambda: (_ for _ in ()).throw(ConnectionRefusedError()), max_retries=0
    )
except otel_resilience.ReliabilityError as exc:
    sys.stdout.buffer.write(pickle.dumps(exc))
"""


def test_a_public_exception_raised_in_another_process_unpickles_here() -> None:
    """What users do: an error raised in a worker process is re-raised in the parent."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, check=True, env=env, timeout=60
    )
    error = pickle.loads(done.stdout)
    assert isinstance(error, otel_resilience.ReliabilityError)
    assert type(error).__module__ == "otel_resilience"
    assert error.error_type is otel_resilience.ExternalServiceError.CONNECTION_ERROR
    assert (error.service_name, error.endpoint, error.attempts) == ("gcs", "upload", 1)


def _readme_api_names() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Public API\n", 1)[1].split("\n#", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Za-z_]+)", cell)}


def test_the_readme_api_table_lists_every_public_name_and_no_other() -> None:
    assert _readme_api_names() == set(otel_resilience.__all__)


def test_an_annotation_that_cannot_be_evaluated_is_left_as_it_was() -> None:
    """Importing the package never fails on an annotation only a type checker can read."""

    class Odd:
        known: int
        only_for_type_checkers: NotImportedAnywhere  # type: ignore[name-defined]  # noqa: F821

    own = inspect.get_annotations(Odd)
    assert otel_resilience._own_hints(Odd, own) == {}

    class Fine:
        number: int

    assert otel_resilience._own_hints(Fine, inspect.get_annotations(Fine)) == {"number": int}


#: ``pickle.dumps(CircuitOpenError(service_name="gcs", endpoint="upload", retry_after=4.0),
#: protocol=2)`` made by version 0.1.0
_PICKLED_BY_0_1_0 = (
    b"\x80\x02cotel_resilience._errors\n_rebuild\nq\x00(cotel_resilience._errors\nCircuitOpenError"
    b"\nq\x01cotel_resilience._errors\nExternalServiceError\nq\x02X\x0c\x00\x00\x00circuit_open"
    b"q\x03\x85q\x04Rq\x05X\x03\x00\x00\x00gcsq\x06X\x06\x00\x00\x00uploadq\x07X(\x00\x00\x00"
    b"circuit breaker for gcs (upload) is openq\x08K\x00G@\x10\x00\x00\x00\x00\x00\x00tq\tRq\n."
)


def test_an_error_pickled_by_the_previous_release_still_unpickles() -> None:
    error = pickle.loads(_PICKLED_BY_0_1_0)
    assert type(error) is otel_resilience.CircuitOpenError
    assert (error.service_name, error.endpoint, error.attempts, error.retry_after) == (
        "gcs",
        "upload",
        0,
        4.0,
    )
    assert str(error) == "circuit breaker for gcs (upload) is open [circuit_open; attempts=0]"
