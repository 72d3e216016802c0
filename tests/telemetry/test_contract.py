"""``otel_resilience.telemetry_contract``: the names contract as data, checked against the contract
documents (the markdown tables) and against the instruments the library creates."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_resilience
from otel_resilience import ExternalServiceError, ReliabilityError
from otel_resilience import _telemetry as telemetry_module
from otel_resilience import telemetry_contract as tc
from otel_resilience._breakers import CircuitBreakerManager, CircuitBreakerState

from .helpers import instrument_kind, points

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "telemetry.md"
#: the project's shared contract file, next to the checkout when there is one
SHARED = next(
    (
        p
        for p in (
            ROOT.parent / "shared" / "TELEMETRY.md",
            ROOT.parents[1] / "shared" / "TELEMETRY.md",
        )
        if p.exists()
    ),
    None,
)
KINDS = {
    "Histogram": tc.Instrument.HISTOGRAM,
    "Counter": tc.Instrument.COUNTER,
    "UpDownCounter": tc.Instrument.UP_DOWN_COUNTER,
    "ObservableGauge": tc.Instrument.OBSERVABLE_GAUGE,
}
SHORT = {
    "service": tc.ATTRIBUTES.service.key,
    "endpoint": tc.ATTRIBUTES.endpoint.key,
    "state": tc.ATTRIBUTES.breaker_state.key,
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One metric row of a markdown metrics table."""

    name: str
    instrument: tc.Instrument
    unit: str
    attributes: frozenset[str]
    prometheus: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _attributes(cell: str, besides_pair: bool) -> frozenset[str]:
    """The attribute keys of a table cell: ``service, endpoint, error.type (of ...)``, or with
    ``besides_pair`` (a table that leaves service and endpoint out) e.g. ```error.type```."""
    plain = re.sub(r"\([^)]*\)", "", cell)
    only = plain.strip().endswith(" only")
    plain = plain.strip().removesuffix(" only")
    plain = re.sub(r":.*", "", plain)  # "`attr`: `a`, `b`" lists values after the colon
    keys = set()
    for part in (p.strip() for p in plain.split(",")):
        quoted = re.match(r"`([^`]+)`", part)
        word = quoted.group(1) if quoted else part.split(" ")[0]
        if word:
            keys.add(SHORT.get(word, word))
    if besides_pair and not only:
        keys |= {tc.ATTRIBUTES.service.key, tc.ATTRIBUTES.endpoint.key}
    return frozenset(keys)


def metric_rows(text: str) -> list[Row]:
    """Every row of every table whose header has "OTel name" and "Prometheus name"."""
    rows: list[Row] = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if "OTel name" in cells and "Prometheus name" in cells:
            header = cells
        elif header is not None and not set(cells[0]) <= {"-", ":"}:
            row = dict(zip(header, cells, strict=True))
            (attributes_column,) = [h for h in header if h.startswith("attributes")]
            unit = row["unit"].strip("`")
            rows.append(
                Row(
                    name=row["OTel name"].strip("`"),
                    instrument=KINDS[re.split(r"[ ,(]", row["instrument"])[0]],
                    unit="" if unit.startswith("none") else unit,
                    attributes=_attributes(row[attributes_column], "besides" in attributes_column),
                    prometheus=re.sub(r"_\{[a-z,]+\}$", "", row["Prometheus name"].strip("`")),
                )
            )
    return rows


def contract_row(metric: tc.Metric) -> Row:
    return Row(
        metric.name, metric.instrument, metric.unit, frozenset(metric.attributes), metric.prometheus
    )


def _documents() -> list[Any]:
    shared = pytest.param(SHARED, id="TELEMETRY.md")
    if SHARED is None:
        shared = pytest.param(
            None, id="TELEMETRY.md", marks=pytest.mark.skip("no ../shared/TELEMETRY.md here")
        )
    return [shared, pytest.param(DOCS, id="docs/telemetry.md")]


def test_the_table_reader_reads_both_table_styles() -> None:
    rows = {r.name: r for r in metric_rows(DOCS.read_text())}
    assert rows["resilience.retries"] == contract_row(tc.METRICS.retries)
    assert rows["resilience.state_store.errors"].attributes == {"resilience.state_store.backend"}
    assert len(rows) == len(tc.METRICS)


@pytest.mark.parametrize("document", _documents())
def test_every_metric_of_the_contract_documents_is_in_the_contract(document: Path) -> None:
    documented = {r.name: r for r in metric_rows(document.read_text())}
    contract = {m.name: contract_row(m) for m in tc.METRICS}

    assert documented == contract


def test_every_attribute_of_telemetry_md_has_the_contracts_values() -> None:
    if SHARED is None:
        pytest.skip("no ../shared/TELEMETRY.md here")
    by_key = {a.key: a for a in tc.ATTRIBUTES}
    text = SHARED.read_text()
    # values the later sections add in prose ("... has `error.type=concurrency_limited`")
    added = {key: set(re.findall(rf"`{re.escape(key)}=([a-z_]+)`", text)) for key in by_key}
    seen = 0
    for line in text.splitlines():
        cells = _cells(line) if line.startswith("| `") else []
        if len(cells) != 3:
            continue
        key = cells[0].strip("`")
        assert key in by_key, key
        values = set(re.findall(r"`([a-z_]+)`", cells[2])) | added[key]
        if values and "e.g." not in cells[2]:
            attribute = by_key[key]
            assert set(attribute.values) <= values <= {*attribute.values, *attribute.reserved}, key
        seen += 1
    assert seen == 8


def test_error_type_values_are_the_external_service_errors() -> None:
    assert set(tc.ERROR_TYPES) == {e.value for e in ExternalServiceError}
    assert tc.ATTRIBUTES.error_type.values == tc.ERROR_TYPES


def test_breaker_state_values_are_the_breakers_states() -> None:
    assert set(tc.ATTRIBUTES.breaker_state.values) == {s.value for s in CircuitBreakerState}


@pytest.mark.parametrize("metric", tc.METRICS, ids=lambda m: m.name)
def test_prometheus_names_follow_the_exporters_rule(metric: tc.Metric) -> None:
    expected = metric.name.replace(".", "_") + ("_seconds" if metric.unit == "s" else "")
    if metric.instrument is tc.Instrument.COUNTER:
        expected += "_total"
    assert metric.prometheus == expected
    assert metric.unit != "1"
    assert metric.labels == tuple(k.replace(".", "_") for k in metric.attributes)
    assert (metric.buckets is not None) == (metric.instrument is tc.Instrument.HISTOGRAM)
    assert set(metric.attributes) <= {a.key for a in tc.ATTRIBUTES}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"buckets": None}, r"resilience\.x: buckets are given for histograms.*histogram"),
        ({"instrument": tc.Instrument.COUNTER}, r"buckets are given for histograms.*counter"),
        ({"unit": "1", "prometheus": "resilience_x"}, r"resilience\.x: unit '1' is not accepted"),
        ({"prometheus": "resilience_x"}, r"'resilience_x'.*expected 'resilience_x_seconds'"),
    ],
    ids=["histogram-without-buckets", "counter-with-buckets", "unit-1", "prometheus-name"],
)
def test_a_metric_that_breaks_the_rules_is_refused_naming_it(
    changes: dict[str, Any], message: str
) -> None:
    fields = {
        "name": "resilience.x",
        "instrument": tc.Instrument.HISTOGRAM,
        "unit": "s",
        "description": "x",
        "attributes": (),
        "prometheus": "resilience_x_seconds",
        "buckets": (1.0,),
    }
    with pytest.raises(ValueError, match=message):
        tc.Metric(**{**fields, **changes})


def test_an_attribute_value_cannot_also_be_reserved() -> None:
    with pytest.raises(ValueError, match=r"resilience\.x: \['a'\] are both"):
        tc.Attribute("resilience.x", "x", values=("a", "b"), reserved=("a",))


def test_histograms_have_three_series_and_second_scale_buckets() -> None:
    assert tc.METRICS.call_duration.series == (
        "resilience_call_duration_seconds_bucket",
        "resilience_call_duration_seconds_sum",
        "resilience_call_duration_seconds_count",
    )
    assert tc.METRICS.retries.series == ("resilience_retries_total",)
    assert tc.METRICS.call_duration.buckets == tc.DURATION_BUCKETS_S
    assert (tc.DURATION_BUCKETS_S[0], tc.DURATION_BUCKETS_S[-1]) == (0.005, 60.0)


def test_the_reserved_names_are_marked_not_emitted() -> None:
    reserved = {m.name for m in tc.METRICS if not m.emitted}
    assert reserved == set()  # the concurrency limit and chaos injection record theirs
    assert tc.METRICS.breaker_override.emitted
    assert tc.METRICS.hedges.emitted  # hedging records it
    assert tc.METRICS.chaos_injections.emitted  # chaos injection records it
    assert {a.key for a in tc.ATTRIBUTES if not a.emitted} == {"http.request.resend_count"}
    assert tc.ATTRIBUTES.chaos_kind.reserved == ("outcome",)
    assert tc.ATTRIBUTES.error_type.reserved == ()  # concurrency_limited is recorded now


def test_spans_are_named_from_service_and_endpoint() -> None:
    assert tc.SPANS.call.span_name("gcs", "upload") == "gcs upload"
    assert tc.SPANS.attempt.span_name("gcs", "upload") == "gcs upload attempt"
    assert [e.name for e in tc.SPANS.call.events] == ["retry"]
    assert set(tc.SPANS.attempt.attributes) >= {tc.ATTRIBUTES.attempt.key}


def test_the_contract_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        tc.METRICS.retries.name = "renamed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tc.METRICS.retries = tc.METRICS.timeouts  # type: ignore[misc]
    assert all(isinstance(group, tuple) for group in (tc.METRICS, tc.ATTRIBUTES, tc.SPANS))


# --- the instruments the library creates -------------------------------------------------------


class RecordingMeter:
    """A meter that records what is created (name, kind, unit, description, buckets)."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[tc.Instrument, str, str, Any]] = {}

    def _record(self, kind: tc.Instrument, name: str, unit: str, description: str, **kw: Any):
        self.created[name] = (
            kind,
            unit,
            description,
            kw.get("explicit_bucket_boundaries_advisory"),
        )
        return object()

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return self._record(tc.Instrument.COUNTER, name, unit, description)

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return self._record(tc.Instrument.UP_DOWN_COUNTER, name, unit, description)

    def create_histogram(self, name: str, unit: str = "", description: str = "", **kw: Any):
        return self._record(tc.Instrument.HISTOGRAM, name, unit, description, **kw)

    def create_observable_gauge(
        self, name: str, callbacks: Any = None, unit: str = "", description: str = ""
    ) -> Any:
        assert callbacks, name
        return self._record(tc.Instrument.OBSERVABLE_GAUGE, name, unit, description)


class RecordingMeterProvider:
    def __init__(self) -> None:
        self.meter = RecordingMeter()

    def get_meter(self, name: str, version: str | None = None) -> RecordingMeter:
        assert name == tc.SCOPE
        return self.meter


def test_the_instruments_created_are_the_emitted_metrics_of_the_contract() -> None:
    provider = RecordingMeterProvider()
    telemetry = telemetry_module.Telemetry(meter_provider=provider)

    assert telemetry.instruments() is not None
    expected = {
        m.name: (m.instrument, m.unit, m.description, list(m.buckets) if m.buckets else None)
        for m in tc.METRICS
        if m.emitted
    }
    assert provider.meter.created == expected


@pytest.mark.parametrize("kind", list(tc.Instrument), ids=lambda k: k.value)
def test_each_instrument_kind_names_the_meter_method_that_creates_it(kind: tc.Instrument) -> None:
    from opentelemetry import metrics

    assert callable(getattr(metrics.Meter, f"create_{kind.value}"))


def test_a_gauge_without_a_callback_is_refused_naming_the_metric() -> None:
    with pytest.raises(ValueError, match=r"resilience\.circuit_breaker\.state: .*callback"):
        telemetry_module._create(RecordingMeter(), tc.METRICS.breaker_state, None)  # type: ignore[arg-type]


def test_an_up_down_counter_is_created_as_one() -> None:
    meter = RecordingMeter()
    telemetry_module._create(meter, tc.METRICS.concurrency_in_flight, None)  # type: ignore[arg-type]
    assert (
        meter.created["resilience.concurrency_limit.in_flight"][0] is tc.Instrument.UP_DOWN_COUNTER
    )


# --- a standalone Telemetry -------------------------------------------------------------------


def test_a_standalone_telemetry_records_into_its_own_providers_only() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    manager = CircuitBreakerManager()
    telemetry = telemetry_module.Telemetry(tracer_provider, meter_provider, breakers=manager)
    breaker = manager.breaker_for("gcs", "upload")

    observer = telemetry.call("gcs", "upload", breaker)
    observer.attempt_ok(observer.attempt_start(1), 0.01)
    observer.end_ok(1)
    breaker.force_open()

    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "gcs upload",
        "gcs upload attempt",
    ]
    data = reader.get_metrics_data()
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert {m.name for m in tc.METRICS if m.emitted} >= set(metrics)
    for name, metric in metrics.items():
        contract = next(m for m in tc.METRICS if m.name == name)
        assert metric.unit == contract.unit, name
        kind = {"histogram": tc.Instrument.HISTOGRAM, "counter": tc.Instrument.COUNTER,
                "gauge": tc.Instrument.OBSERVABLE_GAUGE}[instrument_kind(metric)]  # fmt: skip
        assert kind is contract.instrument, name
    pair = {"resilience.service": "gcs", "resilience.endpoint": "upload"}
    state = points(metrics, tc.METRICS.breaker_state.name)
    assert state[frozenset({**pair, "resilience.circuit_breaker.state": "open"}.items())].value == 1
    override = points(metrics, tc.METRICS.breaker_override.name)
    key = frozenset({**pair, "resilience.circuit_breaker.override": "forced_open"}.items())
    assert override[key].value == 1
    assert otel_resilience.default_runtime().telemetry is not telemetry


def test_a_telemetry_without_breakers_reports_no_breaker_series() -> None:
    reader = InMemoryMetricReader()
    telemetry = telemetry_module.Telemetry(meter_provider=MeterProvider(metric_readers=[reader]))
    telemetry.call("gcs", "upload", CircuitBreakerManager().breaker_for("gcs", "upload")).end_ok(1)

    data = reader.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {tc.METRICS.call_duration.name}


def test_the_noop_observer_is_shared_and_immutable() -> None:
    noop = telemetry_module.NOOP_CALL
    assert telemetry_module.Telemetry().call("a", "b", None) is noop  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        noop.extra = 1  # type: ignore[attr-defined]
    error = ReliabilityError(ExternalServiceError.TIMEOUT, "a", "b")
    assert noop.attempt_start(1) is None
    assert noop.end_failed(error, 1) is None


# --- structure --------------------------------------------------------------------------------


def _structure() -> Any:
    """``tools/structure.py``, the measuring tool of the repository, loaded as a module."""
    name = "_otel_resilience_structure"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "structure.py")
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def test_telemetry_is_in_no_import_cycle_and_imports_no_breaker() -> None:
    structure = _structure()
    path = ROOT / "src" / "otel_resilience" / "_telemetry.py"
    known = {structure.module_name(p) for p in structure.ROOT.rglob("*.py")}
    imports = structure._imports(
        ast.parse(path.read_text()), "otel_resilience._telemetry", False, known
    )
    assert not {m for m in imports if m.startswith("otel_resilience._breaker")}


def test_the_telemetry_modules_hold_no_mutable_module_state() -> None:
    structure = _structure()
    for name in ("telemetry_contract", "_names", "_telemetry"):
        tree = ast.parse((ROOT / "src" / "otel_resilience" / f"{name}.py").read_text())
        mutable, locks = structure._globals(tree, name, structure._frozen_classes(tree))
        assert (mutable, locks) == ([], [])  # the default Telemetry lives on the Runtime
