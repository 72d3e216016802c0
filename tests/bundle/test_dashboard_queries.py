"""The panels are honest, shown by evaluating their committed queries with Prometheus's own engine
(``promtool test rules``, promql_expr_test) over synthetic series:

- attempts per call is never below 1: calls the library refused make no attempt;
- latency is over calls that reached the dependency: instant rejections do not make it look fast;
- the breaker state shows an opening shorter than a step;
- transition bars count each transition once (their sum is the number of transitions);
- 0 where the answer is 0, "no data" only where there were no calls;
- the error budget left and the burn rates count only the error types that burn the budget.

Locally the tests skip when promtool is missing; with CI=true they fail instead.
"""

from __future__ import annotations

import json

import pytest
import yaml
from dashboards import queries

from otel_resilience.telemetry_contract import ATTRIBUTES, METRICS

from .servers import run

OVERVIEW = queries.load("resilience-overview.json")
DEPENDENCY = queries.load("resilience-dependency.json")
A = {ATTRIBUTES.service.label: "llm", ATTRIBUTES.endpoint.label: "chat"}
CALLS = f"{METRICS.call_duration.prometheus}_count"
BUCKETS = f"{METRICS.call_duration.prometheus}_bucket"
ATTEMPTS = f"{METRICS.attempt_duration.prometheus}_count"
TRANSITIONS = METRICS.breaker_transitions.prometheus
#: the scrape interval of the synthetic series; $__rate_interval = 4 of them, $__interval one
SCRAPE = "15s"
RATE_INTERVAL = "1m"


def expr(doc: dict, title: str, ref: str = "A", *, interval: str = SCRAPE) -> str:
    """The panel's query as Grafana sends it at a step of ``interval``: $__rate_interval is
    max(step + scrape interval, 4 scrape intervals)."""
    panel = next(p for p in queries.panels(doc) if p["title"] == title)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    step = int(interval.removesuffix("s")) if interval.endswith("s") else 60 * int(interval[:-1])
    rate_interval = f"{max(step + 15, 60)}s"
    return queries.runnable(target["expr"], rate_interval, interval=interval)


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in {**A, **labels}.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def labels(**extra: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in extra.items()) + "}"


WHO = labels(**A)


def evaluate(promtool, tmp_path, inputs, cases):
    """Run promtool over ``inputs`` with ``cases`` [(expr, eval_time, {labels: value})]; the
    failure message is promtool's, which shows the values Prometheus computed."""
    test = {
        "rule_files": [],
        "evaluation_interval": SCRAPE,
        "tests": [
            {
                "interval": SCRAPE,
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": e,
                        "eval_time": at,
                        "exp_samples": [{"labels": k, "value": v} for k, v in expected.items()],
                    }
                    for e, at, expected in cases
                ],
            }
        ],
    }
    path = tmp_path / "panel.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_attempts_per_call_is_1_when_the_breaker_rejects_most_calls(promtool, tmp_path):
    # 10 calls per 15s reach the dependency (one attempt each), 30 are rejected by the breaker
    inputs = [
        series(CALLS, "0+10x40"),
        series(CALLS, "0+30x40", error_type="circuit_open"),
        series(ATTEMPTS, "0+10x40"),
    ]
    cases = [
        (expr(OVERVIEW, "Attempts per call (retry amplification)"), "5m", {WHO: 1}),
        (expr(DEPENDENCY, "Attempts per call"), "5m", {"{}": 1}),
    ]
    evaluate(promtool, tmp_path, inputs, cases)


def test_attempts_per_call_counts_retries_per_call_that_reached(promtool, tmp_path):
    inputs = [
        series(CALLS, "0+10x40"),
        series(CALLS, "0+30x40", error_type="throttled"),
        series(ATTEMPTS, "0+15x40"),
        series(METRICS.retries.prometheus, "0+5x40", error_type="timeout"),
    ]
    cases = [(expr(OVERVIEW, "Attempts per call (retry amplification)"), "5m", {WHO: 1.5})]
    evaluate(promtool, tmp_path, inputs, cases)


def test_latency_quantiles_leave_out_the_calls_the_breaker_rejected(promtool, tmp_path):
    # the calls that reached took between 1s and 2.5s; 9 of 10 calls were rejected in ~0s
    inputs = [series(BUCKETS, "0+10x40", le=le) for le in ("2.5", "+Inf")]
    inputs += [series(BUCKETS, "0x40", le=le) for le in ("0.005", "1")]
    inputs += [
        series(BUCKETS, "0+90x40", le=le, error_type="circuit_open")
        for le in ("0.005", "1", "2.5", "+Inf")
    ]
    p50 = 1 + 1.5 * 0.5  # histogram_quantile's interpolation within the (1, 2.5] bucket
    cases = [
        (expr(OVERVIEW, "Call latency p50 / p95 / p99", "A"), "5m", {WHO: p50}),
        (expr(DEPENDENCY, "Call vs attempt latency", "A"), "5m", {"{}": p50}),
    ]
    evaluate(promtool, tmp_path, inputs, cases)


def _breaker(open_values: str) -> list[dict[str, str]]:
    closed = " ".join("0" if v == "1" else "1" for v in open_values.split())
    st = ATTRIBUTES.breaker_state.label
    return [
        series(METRICS.breaker_state.prometheus, open_values, **{st: "open"}),
        series(METRICS.breaker_state.prometheus, "0x12", **{st: "half_open"}),
        series(METRICS.breaker_state.prometheus, closed, **{st: "closed"}),
    ]


def test_the_breaker_state_shows_an_opening_shorter_than_a_step(promtool, tmp_path):
    # open for one scrape (at 45s), closed at every scrape before and after
    inputs = _breaker("0 0 0 1 0 0 0 0 0 0 0 0 0")
    state = expr(OVERVIEW, "Circuit-breaker state")
    cases = [(state, "1m30s", {WHO: 2}), (state, "3m", {WHO: 0})]
    evaluate(promtool, tmp_path, inputs, cases)


def test_the_breaker_state_shows_an_opening_no_scrape_saw(promtool, tmp_path):
    # the breaker opened and closed between two scrapes: only the transition counter knows
    st = ATTRIBUTES.breaker_state.label
    inputs = _breaker("0 0 0 0 0 0 0 0 0 0 0 0 0")
    inputs.append(series(TRANSITIONS, "1 1 1 1 2 2 2 2 2 2 2 2", **{st: "open"}))
    state = expr(DEPENDENCY, "Breaker state")
    evaluate(promtool, tmp_path, inputs, [(state, "1m15s", {WHO: 2}), (state, "3m", {WHO: 0})])


@pytest.mark.parametrize(
    ("doc", "title", "who"),
    [(OVERVIEW, "Circuit-breaker transitions", A), (DEPENDENCY, "Transitions by new state", {})],
)
def test_transition_bars_count_each_transition_once(promtool, tmp_path, doc, title, who):
    # opened at 1m and at 1m45s and at 3m (3 transitions); the bars are 1m steps
    st = ATTRIBUTES.breaker_state.label
    inputs = [series(TRANSITIONS, "0 0 0 0 1 1 1 2 2 2 2 2 3 3 3 3 3 3 3 3 3",
                     **{st: "open"})]  # fmt: skip
    bars = expr(doc, title, interval="1m")
    key = labels(**who, **{st: "open"})
    expected = {"1m": 1, "2m": 1, "3m": 1, "4m": 0, "5m": 0}
    evaluate(promtool, tmp_path, inputs, [(bars, at, {key: v}) for at, v in expected.items()])
    assert sum(expected.values()) == 3  # each transition in exactly one bar


def test_a_reset_counter_counts_from_its_restart(promtool, tmp_path):
    st = ATTRIBUTES.breaker_state.label
    inputs = [series(TRANSITIONS, "5 5 5 5 0 0 0 1 1 1 1 1 1", **{st: "open"})]
    bars = expr(DEPENDENCY, "Transitions by new state", interval="1m")
    key = labels(**{st: "open"})
    evaluate(promtool, tmp_path, inputs, [(bars, "1m", {key: 0}), (bars, "2m", {key: 1})])


@pytest.mark.parametrize(
    ("doc", "title", "key"),
    [
        (OVERVIEW, "Exhausted retries (share of calls)", WHO),
        (OVERVIEW, "Timed-out attempts (share of attempts)", WHO),
        (OVERVIEW, "Rejected by open breaker per second", WHO),
        (OVERVIEW, "Fallbacks per second", WHO),
        (OVERVIEW, "Failed calls by error type", "{}"),
        (OVERVIEW, "Calls to the overflow endpoint _other", labels(resilience_service="llm")),
        (OVERVIEW, "Error ratio", WHO),
        (DEPENDENCY, "Exhausted retries by error type", "{}"),
        (DEPENDENCY, "Rate limiter rejections per second", "{}"),
        (DEPENDENCY, "Error ratio", "{}"),
    ],
)
def test_zero_where_nothing_happened_but_calls_were_made(promtool, tmp_path, doc, title, key):
    inputs = [series(CALLS, "0+10x40"), series(ATTEMPTS, "0+10x40")]
    evaluate(promtool, tmp_path, inputs, [(expr(doc, title), "5m", {key: 0})])


@pytest.mark.parametrize("title", ["Fallbacks per second", "Exhausted retries (share of calls)"])
def test_no_data_where_no_call_was_made(promtool, tmp_path, title):
    other = {"series": f'{CALLS}{{resilience_service="x", resilience_endpoint="y"}}',
             "values": "0+1x40"}  # fmt: skip
    query = queries.runnable(
        next(t for p, t in queries.queries(OVERVIEW) if p["title"] == title)["expr"],
        RATE_INTERVAL,
        service="llm",
        interval=SCRAPE,
    )
    evaluate(promtool, tmp_path, [other], [(query, "5m", {})])


def test_state_store_errors_are_0_without_any_error(promtool, tmp_path):
    inputs = [series(CALLS, "0+10x40")]
    evaluate(promtool, tmp_path, inputs, [(expr(OVERVIEW, "State store errors per second"),
                                           "5m", {"{}": 0})])  # fmt: skip


def test_the_committed_queries_are_the_ones_evaluated():
    # the expressions above come from the committed JSON, not from the Python sources
    assert json.loads((queries.HERE / "resilience-overview.json").read_text()) == OVERVIEW


def test_the_budget_left_is_spent_only_by_budget_burning_errors(promtool, tmp_path):
    """1 in 2,000 calls failed with a server error: half the 0.1% budget is spent, whatever the
    caller's own bad requests and the library's throttling (they do not burn it, as in the
    alerts); a dependency without a failure has all of it (1, not "no data")."""
    budget = expr(DEPENDENCY, "Error budget left (30d)")
    assert "[30d]" in budget
    quiet = {ATTRIBUTES.service.label: "shop", ATTRIBUTES.endpoint.label: "checkout"}
    inputs = [
        series(CALLS, "0+1996x40"),
        series(CALLS, "0+1x40", **{ATTRIBUTES.error_type.label: "server_error"}),
        series(CALLS, "0+2x40", **{ATTRIBUTES.error_type.label: "bad_request"}),
        series(CALLS, "0+1x40", **{ATTRIBUTES.error_type.label: "throttled"}),
        series(CALLS, "0+100x40", **quiet),
        series(CALLS, "0+5x40", **quiet, **{ATTRIBUTES.error_type.label: "not_found"}),
    ]
    shop = budget.replace('resilience_service=~".*"', 'resilience_service=~"shop"')
    llm = budget.replace('resilience_service=~".*"', 'resilience_service=~"llm"')
    evaluate(promtool, tmp_path, inputs, [(llm, "10m", {"{}": 0.5}), (shop, "10m", {"{}": 1})])


def test_the_burn_rate_panel_counts_the_errors_the_alerts_count(promtool, tmp_path):
    """4 in 1,024 calls failed with a server error; many more were the caller's bad requests or
    throttled by its own rate limiter, which burn no budget (SLO_EXCLUDED_ERROR_TYPES): the burn
    rate is (4 / 1024) / 0.001, as the burn-rate alert computes it, not 20 / 1024 / 0.001."""
    inputs = [
        series(CALLS, "0+1004x40"),
        series(CALLS, "0+4x40", error_type="server_error"),
        series(CALLS, "0+6x40", error_type="bad_request"),
        series(CALLS, "0+10x40", error_type="throttled"),
    ]
    burn = expr(DEPENDENCY, "Error-budget burn rate", "A")  # the 5m window
    assert "[5m]" in burn
    # (rounded: promtool 2.42 compares floats exactly, and 3.90625 comes out 3.906249999999999)
    evaluate(promtool, tmp_path, inputs, [(f"round({burn}, 0.001)", "8m", {"{}": 3.906})])
