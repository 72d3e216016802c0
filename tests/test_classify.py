"""The classification package: imports point one way, registries are objects, and one rule
decides retryability for the retries and for ``ReliabilityError.retryable``."""

from __future__ import annotations

import ast
import importlib.util
import pickle
import sys
from pathlib import Path
from types import ModuleType

import pytest

import otel_resilience
from otel_resilience import (
    Classification,
    Classifiers,
    ExternalServiceError,
    ReliabilityError,
    configure,
    map_external_error,
    register_classifier,
    resilient_call,
    resilient_call_async,
)
from otel_resilience._classify import CLIENT_CLASSIFIERS
from otel_resilience._errors import is_retryable
from support import FakeClock, classify

E = ExternalServiceError
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "otel_resilience" / "_classify"

#: each module may import only modules of an earlier layer (never one of its own layer)
LAYERS = (
    ("_base",),
    ("_http",),
    ("_rpc", "_rules"),
    (
        "_aiohttp",
        "_botocore",
        "_clamd",
        "_google",
        "_grpc",
        "_httpx",
        "_openai",
        "_redis",
        "_requests",
        "_urllib3",
    ),
    ("_libraries",),
    ("_registry",),
    ("_mapper",),
    ("__init__",),
)
CLIENT_MODULES = frozenset(LAYERS[3])
#: the only modules of the library outside the package that classification may use
ALLOWED_OUTSIDE = frozenset({"_errors", "_config", "_scrub"})


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules of the package, modules of the library outside it) that ``path`` imports."""
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("otel_resilience") for a in node.names), path.name
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            inside.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            outside.add((node.module or "").partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("otel_resilience"), path.name
    return inside, outside


@pytest.fixture
def structure(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``tools/structure.py``, the architecture measurements, imported from the repository."""
    spec = importlib.util.spec_from_file_location("structure", ROOT / "tools" / "structure.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "structure", module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def test_the_layers_name_every_module_of_the_package() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == {name for layer in LAYERS for name in layer}


def test_classification_takes_part_in_no_import_cycle(structure: ModuleType) -> None:
    cycles = structure.measure().import_cycles
    assert not [c for c in cycles if any("_classify" in m or "_mapping" in m for m in c)], cycles
    assert structure.measure(PACKAGE).import_cycles == []


@pytest.mark.parametrize(
    ("layer", "module"), [(i, m) for i, layer in enumerate(LAYERS) for m in layer]
)
def test_imports_point_one_way(layer: int, module: str) -> None:
    inside, outside = _imports(PACKAGE / f"{module}.py")
    earlier = {name for below in LAYERS[:layer] for name in below}
    assert inside <= earlier, f"{module} imports {sorted(inside - earlier)} of its layer or above"
    assert outside <= ALLOWED_OUTSIDE, f"{module} imports {sorted(outside - ALLOWED_OUTSIDE)}"


@pytest.mark.parametrize("module", sorted(CLIENT_MODULES))
def test_no_client_module_imports_another(module: str) -> None:
    inside, _ = _imports(PACKAGE / f"{module}.py")
    assert not inside & CLIENT_MODULES, f"{module} imports {sorted(inside & CLIENT_MODULES)}"


def test_the_package_holds_no_module_state(
    structure: ModuleType,
) -> None:
    figures = structure.measure(PACKAGE)
    assert figures.mutable_globals == []  # the registry lives on the Runtime
    assert figures.module_locks == []


def test_the_package_is_simple_by_radon(structure: ModuleType) -> None:
    pytest.importorskip("radon")
    figures = structure.measure(PACKAGE)
    assert figures.radon_c_or_worse == []
    assert figures.radon_average <= 2.5


def test_the_client_and_error_class_tables_are_read_only(structure: ModuleType) -> None:
    from otel_resilience._errors import ERROR_CLASSES

    with pytest.raises(TypeError):
        CLIENT_CLASSIFIERS["vendor"] = lambda exc: None  # type: ignore[index]
    with pytest.raises(TypeError):
        ERROR_CLASSES[E.UNKNOWN_ERROR] = ReliabilityError  # type: ignore[index]
    assert "otel_resilience._errors.ERROR_CLASSES" not in structure.measure().mutable_globals


# --- registries are objects -----------------------------------------------------------------


class QuotaError(Exception):
    pass


def _quota(exc: BaseException) -> Classification | None:
    return Classification(E.RATE_LIMIT, 5.0) if isinstance(exc, QuotaError) else None


def test_reset_forgets_registered_classifiers() -> None:
    register_classifier(_quota)
    assert classify(QuotaError("x")) == Classification(E.RATE_LIMIT, 5.0)

    otel_resilience.reset()

    assert otel_resilience.default_runtime().classifiers.registered == ()
    assert classify(QuotaError("x")) == Classification(E.UNKNOWN_ERROR)


def test_an_explicit_registry_is_used_instead_of_the_default() -> None:
    registry = Classifiers()
    registry.register(_quota)

    mapped = map_external_error("billing", "charge", QuotaError("x"), classifiers=registry)
    assert (mapped.error_type, mapped.retry_after) == (E.RATE_LIMIT, 5.0)
    assert map_external_error("billing", "charge", QuotaError("x")).error_type is E.UNKNOWN_ERROR
    assert otel_resilience.default_runtime().classifiers.registered == ()


def test_the_default_registry_does_not_leak_into_another() -> None:
    register_classifier(_quota)
    assert Classifiers().classify(QuotaError("x")) == Classification(E.UNKNOWN_ERROR)
    assert classify(QuotaError("x"), Classifiers()) == Classification(E.UNKNOWN_ERROR)


def test_clear_forgets_every_classifier_and_old_removers_stay_harmless() -> None:
    registry = Classifiers()
    remove = registry.register(_quota)
    registry.register(lambda exc: None)
    assert len(registry.registered) == 2

    registry.clear()
    remove()  # after clear(): nothing left to remove, and no error

    assert registry.registered == ()
    assert registry.classify(QuotaError("x")) == Classification(E.UNKNOWN_ERROR)


def test_a_classifier_registered_twice_is_removed_once_per_remover() -> None:
    registry = Classifiers()
    first = registry.register(_quota)
    registry.register(_quota)

    first()
    assert registry.registered == (_quota,)
    assert registry.classify(QuotaError("x")).error_type is E.RATE_LIMIT


def test_register_rejects_non_callables_naming_the_type() -> None:
    with pytest.raises(TypeError, match="classifier must be callable, got int"):
        Classifiers().register(42)  # type: ignore[arg-type]


def test_map_external_error_rejects_a_registry_that_is_not_one() -> None:
    with pytest.raises(TypeError, match="classifiers must be a Classifiers registry or None, got"):
        map_external_error("svc", "op", ValueError(), classifiers=[_quota])  # type: ignore[arg-type]


def test_a_library_table_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"libraries must be a mapping .* got list"):
        Classifiers(libraries=[_quota])  # type: ignore[arg-type]


def test_a_registry_library_table_is_copied() -> None:
    table = {"vendor_sdk": lambda exc: Classification(E.NOT_FOUND)}
    registry = Classifiers(libraries=table)
    table.clear()  # later changes of the caller's dict do not reach the registry

    class VendorError(Exception):
        pass

    VendorError.__module__ = "vendor_sdk.errors"
    assert registry.classify(VendorError("x")) == Classification(E.NOT_FOUND)
    assert registry.classify(ConnectionResetError()) == Classification(E.CONNECTION_ERROR)


# --- one retryability rule ------------------------------------------------------------------


def test_the_retries_use_the_one_is_retryable() -> None:
    from otel_resilience import _retry

    assert _retry.is_retryable is is_retryable


class Weird:
    """A function failing with an exception no rule can classify, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        raise RuntimeError("something odd")


@pytest.mark.parametrize(
    ("retry_unknown", "calls"),
    [(True, 3), (False, 1)],
    ids=["retry-unknown-on", "retry-unknown-off"],
)
def test_retryable_agrees_with_what_the_retries_did(
    clock: FakeClock, retry_unknown: bool, calls: int
) -> None:
    configure(services={"svc": {"RETRY_UNKNOWN_ERRORS": retry_unknown}})
    func = Weird()
    with pytest.raises(ReliabilityError) as info:
        resilient_call("svc", "op", func, max_retries=3)
    assert info.value.error_type is E.UNKNOWN_ERROR
    assert func.calls == info.value.attempts == calls
    assert info.value.retryable is retry_unknown


@pytest.mark.parametrize(
    ("retry_unknown", "calls"),
    [(True, 3), (False, 1)],
    ids=["retry-unknown-on", "retry-unknown-off"],
)
async def test_retryable_agrees_with_what_the_async_retries_did(
    clock: FakeClock, retry_unknown: bool, calls: int
) -> None:
    configure(services={"svc": {"RETRY_UNKNOWN_ERRORS": retry_unknown}})
    func = Weird()

    async def call() -> str:
        return func()

    with pytest.raises(ReliabilityError) as info:
        await resilient_call_async("svc", "op", call, max_retries=3)
    assert func.calls == info.value.attempts == calls
    assert info.value.retryable is retry_unknown


def test_a_nested_error_relabelled_by_the_outer_call_carries_the_outer_setting(
    clock: FakeClock,
) -> None:
    configure(services={"outer": {"RETRY_UNKNOWN_ERRORS": False}})
    inner = Weird()

    def outer() -> str:
        return resilient_call("inner", "op", inner, max_retries=1)

    with pytest.raises(ReliabilityError) as info:
        resilient_call("outer", "op", outer, max_retries=3)
    assert (info.value.service_name, info.value.error_type) == ("outer", E.UNKNOWN_ERROR)
    assert inner.calls == 1  # the outer call did not retry
    assert info.value.retryable is False


def test_map_external_error_marks_the_service_setting_and_pickling_keeps_it() -> None:
    configure(services={"strict": {"RETRY_UNKNOWN_ERRORS": False}})
    strict = map_external_error("strict", "op", RuntimeError("odd"))
    lenient = map_external_error("other", "op", RuntimeError("odd"))

    assert (strict.retryable, lenient.retryable) == (False, True)
    assert pickle.loads(pickle.dumps(strict)).retryable is False
    assert pickle.loads(pickle.dumps(lenient)).retryable is True
    # a transient type is retryable whatever the setting
    assert map_external_error("strict", "op", TimeoutError()).retryable is True


def test_an_error_built_by_hand_follows_the_default_setting() -> None:
    assert ReliabilityError(E.UNKNOWN_ERROR, "svc", "op").retryable is True
    assert ReliabilityError(E.BAD_REQUEST, "svc", "op").retryable is False


def test_a_config_that_cannot_be_read_maps_with_safe_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELIABILITY_SVC_HTTP_RETRIES", "abc")  # the service's config cannot load
    mapped = map_external_error("svc", "op", RuntimeError("token=hunter2 odd"))
    assert mapped.retryable is True
    assert "hunter2" not in str(mapped)  # the default redaction still applies
