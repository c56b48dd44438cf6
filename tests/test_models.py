"""The model catalogue in process, against a fake TF Serving: when a model is ready, how many
failed polls it tolerates, when it reloads a signature, and what its readiness metric says."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gateway._proto.tfserving import types_pb2
from gateway.config import GatewayConfig, ModelSettings
from gateway.errors import InvalidRequestError, ModelNotFoundError
from gateway.metrics import Metrics
from gateway.models import ModelCatalog
from gateway.tfserving.signatures import VersionState, VersionStatus
from tests.fakes import FakeUpstream, classifier, unavailable

CONFIG = GatewayConfig(models=(ModelSettings("colors"),), unready_after_failures=3)


def make_catalog(
    upstream: FakeUpstream, config: GatewayConfig = CONFIG
) -> tuple[ModelCatalog, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(registry, tuple(m.name for m in config.models))
    return ModelCatalog(config, upstream, metrics), registry


def refresh(catalog: ModelCatalog, times: int = 1) -> None:
    async def polls() -> None:
        for _ in range(times):
            await catalog.refresh()

    asyncio.run(polls())


def ready_metric(registry: CollectorRegistry, model: str = "colors") -> float | None:
    return registry.get_sample_value("tfs_gateway_model_ready", {"model": model})


def test_a_model_is_not_ready_before_the_first_refresh() -> None:
    catalog, _ = make_catalog(FakeUpstream(classifier()))
    served = catalog.model("colors")
    assert (served.ready, served.status_message) == (False, "not checked yet")


def test_a_model_becomes_ready_after_a_refresh() -> None:
    catalog, _ = make_catalog(FakeUpstream(classifier(version=1)))
    refresh(catalog)
    served = catalog.model("colors")
    assert (served.ready, served.status_message, served.metadata) == (True, "ready", classifier())


def test_a_ready_model_has_its_default_signature_bound() -> None:
    catalog, _ = make_catalog(FakeUpstream(classifier()))
    refresh(catalog)
    binding = catalog.model("colors").binding()
    assert (binding.signature_name, binding.outputs.scores_output, binding.batchable) == (
        "serving_default",
        "scores",
        True,
    )


def test_a_failed_first_refresh_leaves_the_model_unready_with_the_reason() -> None:
    upstream = FakeUpstream(classifier())
    upstream.fail("status", unavailable("connection refused"))
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    served = catalog.model("colors")
    assert not served.ready
    assert served.status_message == "upstream: cannot connect to TF Serving"


def test_unavailable_is_tolerated_below_the_failure_threshold() -> None:
    upstream = FakeUpstream(classifier())
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    upstream.fail("status", unavailable(), unavailable())
    refresh(catalog, times=2)
    served = catalog.model("colors")
    assert (served.ready, served.failures) == (True, 2)


def test_a_model_is_unready_after_the_threshold_of_consecutive_failures() -> None:
    upstream = FakeUpstream(classifier())
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    upstream.fail("status", unavailable(), unavailable(), unavailable())
    refresh(catalog, times=3)
    served = catalog.model("colors")
    assert (served.ready, served.failures) == (False, 3)


def test_no_available_version_counts_as_a_failure() -> None:
    upstream = FakeUpstream(classifier())
    upstream.statuses["colors"] = [VersionStatus(1, VersionState.LOADING, grpc.StatusCode.OK, "")]
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    served = catalog.model("colors")
    assert (served.ready, served.failures, served.status_message) == (
        False,
        1,
        "TF Serving has no AVAILABLE version",
    )


def test_a_success_resets_the_failure_count() -> None:
    upstream = FakeUpstream(classifier())
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    upstream.fail("status", unavailable(), unavailable())
    refresh(catalog, times=3)  # two failures, then a success
    upstream.fail("status", unavailable(), unavailable())
    refresh(catalog, times=2)
    served = catalog.model("colors")
    assert (served.ready, served.failures) == (True, 2)


def test_an_unready_model_recovers_on_the_next_success() -> None:
    upstream = FakeUpstream(classifier())
    catalog, _ = make_catalog(upstream)
    upstream.fail("status", unavailable(), unavailable(), unavailable())
    refresh(catalog, times=4)
    served = catalog.model("colors")
    assert (served.ready, served.failures, served.status_message) == (True, 0, "ready")


def test_the_signature_is_loaded_once_per_version() -> None:
    upstream = FakeUpstream(classifier(version=1))
    catalog, _ = make_catalog(upstream)
    refresh(catalog, times=3)
    assert (upstream.calls["status"], upstream.calls["metadata"]) == (3, 1)


def test_a_new_available_version_reloads_the_signature() -> None:
    upstream = FakeUpstream(classifier(version=1))
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    upstream.publish(classifier(version=2, classes=5))
    refresh(catalog)
    served = catalog.model("colors")
    assert upstream.calls["metadata"] == 2
    assert served.metadata == classifier(version=2, classes=5)


def test_a_signature_the_profile_cannot_fit_makes_the_model_unready_at_once() -> None:
    upstream = FakeUpstream(classifier(version=1))
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    upstream.publish(classifier(version=2, input_dtype=types_pb2.DT_INT32))
    refresh(catalog)  # one failure, well below the threshold of 3
    served = catalog.model("colors")
    assert (served.ready, served.failures, served.status_message) == (
        False,
        1,
        "model 'colors', signature 'serving_default': "
        "input 'images' has dtype DT_INT32, not an image dtype",
    )


def test_an_unknown_model_is_not_found_with_the_models_served() -> None:
    config = GatewayConfig(models=(ModelSettings("colors"), ModelSettings("shapes")))
    catalog, _ = make_catalog(FakeUpstream(classifier()), config)
    with pytest.raises(ModelNotFoundError) as caught:
        catalog.model("nope")
    assert caught.value.message == (
        "model 'nope' is not served by this gateway (models: colors, shapes)"
    )


def test_an_empty_model_name_is_an_invalid_request() -> None:
    catalog, _ = make_catalog(FakeUpstream(classifier()))
    with pytest.raises(InvalidRequestError) as caught:
        catalog.model("")
    assert caught.value.message == "model.name is required"


def test_the_ready_metric_is_0_before_the_first_refresh() -> None:
    _, registry = make_catalog(FakeUpstream(classifier()))
    assert ready_metric(registry) == 0.0


def test_the_ready_metric_is_1_once_ready() -> None:
    catalog, registry = make_catalog(FakeUpstream(classifier()))
    refresh(catalog)
    assert ready_metric(registry) == 1.0


def test_the_ready_metric_drops_to_0_at_the_failure_threshold() -> None:
    upstream = FakeUpstream(classifier())
    catalog, registry = make_catalog(upstream)
    refresh(catalog)
    upstream.fail("status", unavailable(), unavailable())
    refresh(catalog, times=2)
    assert ready_metric(registry) == 1.0
    upstream.fail("status", unavailable())
    refresh(catalog)
    assert ready_metric(registry) == 0.0


def test_a_reload_keeps_a_ready_model_ready_without_asking_again() -> None:
    upstream = FakeUpstream(classifier())
    catalog, _ = make_catalog(upstream)
    refresh(catalog)
    catalog.reconfigure(GatewayConfig(models=(ModelSettings("colors", top_k=1),)))
    served = catalog.model("colors")
    assert (served.ready, served.settings.top_k, upstream.calls["metadata"]) == (True, 1, 1)


def test_a_model_removed_by_a_reload_is_no_longer_reported() -> None:
    config = GatewayConfig(models=(ModelSettings("colors"), ModelSettings("shapes")))
    catalog, registry = make_catalog(
        FakeUpstream(classifier("colors"), classifier("shapes")), config
    )
    refresh(catalog)
    catalog.reconfigure(GatewayConfig(models=(ModelSettings("colors"),)))
    # Removed, not 0: a model taken out on purpose must not look like one that went down.
    assert ready_metric(registry, "shapes") is None
    assert ready_metric(registry, "colors") == 1.0
