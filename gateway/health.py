"""grpc.health.v1 as Kubernetes and balancers read it (DECISIONS 7): ``""`` and the ImageGateway
service are readiness (every configured model available upstream), ``model/NAME`` one model's,
and ``liveness`` SERVING while the process answers at all."""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2

from gateway._proto import classify_pb2
from gateway.models import ServedModel

SERVICE_NAME = classify_pb2.DESCRIPTOR.services_by_name["ImageGateway"].full_name
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def model_service_name(model: str) -> str:
    """The grpc.health.v1 service name that reports one model's readiness."""
    return f"model/{model}"


class Readiness:
    """Publishes readiness to the health service; ``ready`` is what the HTTP probes read."""

    def __init__(self) -> None:
        # grpc-stubs 1.53 predates grpc_health's asyncio servicer.
        self.servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.ready = False
        self._stopping = False

    async def starting(self) -> None:
        await self.servicer.set("", NOT_SERVING)
        await self.servicer.set(SERVICE_NAME, NOT_SERVING)
        await self.servicer.set(LIVENESS, SERVING)

    async def publish(self, models: Iterable[ServedModel]) -> None:
        served = list(models)
        everything = bool(served) and all(m.ready for m in served)
        for model in served:
            status = SERVING if model.ready else NOT_SERVING
            await self.servicer.set(model_service_name(model.name), status)
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, SERVING if everything else NOT_SERVING)
        self.ready = everything and not self._stopping

    async def stopping(self) -> None:
        """NOT_SERVING everywhere from the start of shutdown, for good."""
        self._stopping, self.ready = True, False
        await self.servicer.enter_graceful_shutdown()
