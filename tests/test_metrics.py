"""``Metrics`` on a registry of its own: which model label a request is counted under, what a
config reload adds, and what is exported before anything happens."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry

from gateway.metrics import STAGES, Metrics


def make_metrics(*models: str) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, models), registry


def requests(registry: CollectorRegistry, model: str, code: str = "OK") -> float | None:
    labels = {"method": "Classify", "model": model, "code": code}
    return registry.get_sample_value("tfs_gateway_requests_total", labels)


def test_a_request_is_counted_under_its_configured_model() -> None:
    metrics, registry = make_metrics("colors")
    metrics.record_request("Classify", "colors", "OK", time.perf_counter())
    assert requests(registry, "colors") == 1.0


def test_a_request_is_counted_under_its_status_code() -> None:
    metrics, registry = make_metrics("colors")
    metrics.record_request("Classify", "colors", "NOT_FOUND", time.perf_counter())
    assert (requests(registry, "colors", "NOT_FOUND"), requests(registry, "colors")) == (1.0, None)


def test_a_request_for_an_unconfigured_model_is_counted_as_unknown() -> None:
    metrics, registry = make_metrics("colors")
    metrics.record_request("Classify", "no-such-model", "NOT_FOUND", time.perf_counter())
    assert (
        requests(registry, "_unknown", "NOT_FOUND"),
        requests(registry, "no-such-model", "NOT_FOUND"),
    ) == (1.0, None)


def test_a_request_without_a_model_name_is_counted_under_an_empty_model() -> None:
    metrics, registry = make_metrics("colors")
    metrics.record_request("Classify", "", "INVALID_ARGUMENT", time.perf_counter())
    assert requests(registry, "", "INVALID_ARGUMENT") == 1.0


def test_a_request_duration_is_observed_from_its_start() -> None:
    metrics, registry = make_metrics("colors")
    started = time.perf_counter() - 0.3  # a request that began 300 ms ago
    metrics.record_request("Classify", "colors", "OK", started)
    labels = {"method": "Classify", "model": "colors"}
    bucket = dict(labels, le="0.25")
    assert (
        registry.get_sample_value("tfs_gateway_request_duration_seconds_count", labels),
        registry.get_sample_value("tfs_gateway_request_duration_seconds_bucket", bucket),
    ) == (1.0, 0.0)


def test_a_model_added_by_a_reload_is_counted_under_its_name() -> None:
    metrics, registry = make_metrics("colors")
    metrics.add_models(("colors", "shapes"))
    metrics.record_request("Classify", "shapes", "OK", time.perf_counter())
    assert (requests(registry, "shapes"), requests(registry, "_unknown")) == (1.0, None)


def test_a_model_added_by_a_reload_is_exported_not_ready() -> None:
    metrics, registry = make_metrics("colors")
    metrics.add_models(("shapes",))
    assert registry.get_sample_value("tfs_gateway_model_ready", {"model": "shapes"}) == 0.0


def test_a_reload_keeps_counting_the_models_it_had() -> None:
    metrics, registry = make_metrics("colors")
    metrics.add_models(("shapes",))
    metrics.record_request("Classify", "colors", "OK", time.perf_counter())
    assert requests(registry, "colors") == 1.0


def test_adding_a_known_model_again_keeps_its_ready_value() -> None:
    metrics, registry = make_metrics("colors")
    metrics.model_ready.labels("colors").set(1)
    metrics.add_models(("colors",))
    assert registry.get_sample_value("tfs_gateway_model_ready", {"model": "colors"}) == 1.0


def test_stage_histograms_of_an_unknown_model_go_to_unknown() -> None:
    metrics, registry = make_metrics("colors")
    metrics.for_model("no-such-model").stages["decode"].observe(0.001)
    labels = {"stage": "decode", "model": "_unknown"}
    assert registry.get_sample_value("tfs_gateway_stage_duration_seconds_count", labels) == 1.0


def test_every_stage_of_a_configured_model_is_exported_from_the_start() -> None:
    _, registry = make_metrics("colors")
    counts = {
        stage: registry.get_sample_value(
            "tfs_gateway_stage_duration_seconds_count", {"stage": stage, "model": "colors"}
        )
        for stage in STAGES
    }
    assert counts == dict.fromkeys(STAGES, 0.0)


def test_every_stream_frame_outcome_is_exported_at_0_from_the_start() -> None:
    _, registry = make_metrics("colors")
    outcomes = ("received", "served", "failed", "dropped", "cancelled")
    counts = {
        outcome: registry.get_sample_value("tfs_gateway_stream_frames_total", {"outcome": outcome})
        for outcome in outcomes
    }
    assert counts == dict.fromkeys(outcomes, 0.0)


def test_two_instances_on_their_own_registries_do_not_share_counts() -> None:
    first, first_registry = make_metrics("colors")
    _, second_registry = make_metrics("colors")
    first.record_request("Classify", "colors", "OK", time.perf_counter())
    assert (requests(first_registry, "colors"), requests(second_registry, "colors")) == (1.0, None)


def test_nothing_is_registered_on_the_global_registry() -> None:
    make_metrics("colors")
    assert REGISTRY.get_sample_value("tfs_gateway_in_flight_requests") is None
