"""Models as TF Serving sees them: base paths with numeric version folders, a version policy,
version labels, and the lookups (with TF Serving's error codes and messages) that every RPC and
REST call shares."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger(__name__)


class ServingError(Exception):
    """An error answered to the client with a gRPC code (REST maps it to an HTTP status)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ServedVersion:
    version: int
    path: Path
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    functions: dict[str, Any]


@dataclass
class ServedModel:
    name: str
    base_path: Path
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


def _serve_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Every signature of the ``serve`` MetaGraphDef, ``__saved_model_init_op`` included."""
    saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path} has no MetaGraphDef tagged 'serve'")


def _versions_on_disk(base_path: Path) -> list[int]:
    return sorted(int(p.name) for p in base_path.iterdir() if p.is_dir() and p.name.isdigit())


def _select_versions(
    available: list[int], policy: model_server_config_pb2.ModelConfig
) -> list[int]:
    choice = policy.model_version_policy.WhichOneof("policy_choice")
    if choice == "all":
        return available
    if choice == "specific":
        wanted = set(policy.model_version_policy.specific.versions)
        return [v for v in available if v in wanted]
    count = policy.model_version_policy.latest.num_versions or 1
    return available[-count:]


def _load_version(name: str, path: Path, version: int) -> ServedVersion:
    loaded = tf.saved_model.load(str(path))
    log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
    return ServedVersion(
        version=version,
        path=path,
        signature_defs=_serve_signature_defs(path),
        functions=dict(loaded.signatures),
    )


def sync_versions(model: ServedModel, config: model_server_config_pb2.ModelConfig) -> None:
    """Load the versions the policy wants from disk and drop the others, as TF Serving's file
    system poll does. The version map is replaced whole, so readers never see it half-built."""
    wanted = _select_versions(_versions_on_disk(model.base_path), config)
    if sorted(model.versions) == wanted:
        return
    versions = {
        v: model.versions.get(v) or _load_version(model.name, model.base_path / str(v), v)
        for v in wanted
    }
    for gone in sorted(set(model.versions) - set(versions)):
        log.info("Unloaded servable version {name: %s version: %d}", model.name, gone)
    model.versions = versions


def load_model(config: model_server_config_pb2.ModelConfig) -> ServedModel:
    model = ServedModel(name=config.name, base_path=Path(config.base_path))
    sync_versions(model, config)
    for label, version in config.version_labels.items():
        if version not in model.versions:
            raise ValueError(
                f"label {label!r} of {model.name!r} points at unloaded version {version}"
            )
        model.labels[label] = version
    return model


class ModelRegistry:
    def __init__(self, configs: list[model_server_config_pb2.ModelConfig]) -> None:
        self.configs = {config.name: config for config in configs}
        self.models = {config.name: load_model(config) for config in configs}

    def poll(self) -> None:
        """One file-system poll: pick up new version folders, drop removed ones."""
        for name, model in self.models.items():
            try:
                sync_versions(model, self.configs[name])
            except Exception:
                log.exception("loading a new version of %s failed", name)

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[ServedModel, ServedVersion]:
        """The version a request's ModelSpec names, as ServerCore::GetServableHandle finds it."""
        model = self.models.get(spec.name)
        choice = spec.WhichOneof("version_choice")
        version: int | None = None
        if choice == "version_label":
            version = model.labels.get(spec.version_label) if model else None
            if version is None:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {spec.version_label}",
                )
        elif choice == "version":
            version = spec.version.value
        if model is not None and model.versions:
            if version is None:
                return model, model.versions[max(model.versions)]
            if version in model.versions:
                return model, model.versions[version]
        request = f"Latest({spec.name})" if version is None else f"Specific({spec.name}, {version})"
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")

    def versions_for_status(self, spec: model_pb2.ModelSpec) -> list[ServedVersion]:
        """The versions GetModelStatus reports, with its NOT_FOUND messages."""
        model = self.models.get(spec.name)
        if model is None or not model.versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
            )
        choice = spec.WhichOneof("version_choice")
        if choice is None:
            return [model.versions[v] for v in sorted(model.versions, reverse=True)]
        if choice == "version" and spec.version.value not in model.versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find version {spec.version.value} of model {spec.name}",
            )
        _, version = self.resolve(spec)
        return [version]
