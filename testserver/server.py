"""A TF-Serving-compatible model server that runs real SavedModels with the real TensorFlow.

It takes ``tensorflow_model_server``'s own command line (and ``MODEL_NAME`` /
``MODEL_BASE_PATH`` as its container image does), serves the official
``tensorflow.serving.PredictionService`` and ``ModelService`` over gRPC and, with
``--rest_api_port``, TF Serving's REST API. It logs TF Serving's start-up lines, which tests and
scripts read to learn the bound ports:

    Running gRPC ModelServer at 0.0.0.0:PORT ...
    Exporting HTTP/REST API at:localhost:PORT ...
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from testserver import predict
from testserver.registry import ModelRegistry, ServingError

log = logging.getLogger("testserver")
MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving's server limit: INT32_MAX
_STATE_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def _abort(context: grpc.ServicerContext, error: ServingError) -> None:
    context.abort(error.code, error.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        registry: ModelRegistry,
        as_tensor_content: bool,
        latency_s: float,
        log_requests: bool = False,
    ) -> None:
        self.registry = registry
        self.as_tensor_content = as_tensor_content
        self.latency_s = latency_s
        self.log_requests = log_requests

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        try:
            _, version = self.registry.resolve(request.model_spec)
            outputs = predict.run(
                version,
                request.model_spec.signature_name,
                request.inputs,
                list(request.output_filter),
            )
        except ServingError as error:
            _abort(context, error)
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.log_requests:
            print(f"Predict {request.model_spec.name} version {version.version}", flush=True)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version.version
        response.model_spec.signature_name = (
            request.model_spec.signature_name or predict.DEFAULT_SIGNATURE
        )
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(predict.encode_output(array, self.as_tensor_content))
        return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        try:
            if not request.metadata_field:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "GetModelMetadataRequest must specify at least one metadata_field",
                )
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                    )
            _, version = self.registry.resolve(request.model_spec)
        except ServingError as error:
            _abort(context, error)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in version.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            versions = self.registry.versions_for_status(request.model_spec)
        except ServingError as error:
            _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            item = response.model_version_status.add(version=version.version)
            item.state = _STATE_AVAILABLE
        return response


def _flag_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="testserver",
        description="TF-Serving-compatible test server (tensorflow_model_server's flags).",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port (0: off)")
    parser.add_argument("--rest_api_host", default="localhost")
    parser.add_argument("--grpc_host", default="0.0.0.0")
    parser.add_argument("--model_name", default=os.environ.get("MODEL_NAME", "default"))
    parser.add_argument("--model_base_path", default=os.environ.get("MODEL_BASE_PATH", ""))
    parser.add_argument("--model_config_file", default="", help="text ModelServerConfig")
    parser.add_argument(
        "--enable_serialization_as_tensor_content",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="answer Predict in tensor_content instead of the typed *_val fields",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often to look for new version folders (0: never)",
    )
    parser.add_argument(
        "--test_log_requests",
        action="store_true",
        help="(test server only) print a line for every Predict served",
    )
    parser.add_argument(
        "--test_latency_ms",
        type=float,
        default=0.0,
        help="(test server only) sleep this long in every Predict, to simulate a slow model",
    )
    return parser.parse_args(argv)


def model_configs(args: argparse.Namespace) -> list[model_server_config_pb2.ModelConfig]:
    if args.model_config_file:
        config = text_format.Parse(
            Path(args.model_config_file).read_text(), model_server_config_pb2.ModelServerConfig()
        )
        return list(config.model_config_list.config)
    if not args.model_base_path:
        sys.exit("testserver: give --model_config_file, or --model_base_path (or MODEL_BASE_PATH)")
    return [
        model_server_config_pb2.ModelConfig(
            name=args.model_name, base_path=args.model_base_path, model_platform="tensorflow"
        )
    ]


def create_server(registry: ModelRegistry, args: argparse.Namespace) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(
            registry,
            args.enable_serialization_as_tensor_content,
            args.test_latency_ms / 1000,
            args.test_log_requests,
        ),
        server,
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    port = server.add_insecure_port(f"{args.grpc_host}:{args.port}")
    return server, port


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    registry = ModelRegistry(model_configs(args))
    server, port = create_server(registry, args)
    server.start()
    print(f"Running gRPC ModelServer at {args.grpc_host}:{port} ...", flush=True)
    rest = None
    if args.rest_api_port:
        from testserver.rest import create_rest_server

        rest = create_rest_server(registry, args.rest_api_host, args.rest_api_port)
        threading.Thread(target=rest.serve_forever, daemon=True).start()
        rest_port = rest.server_address[1]
        print(f"Exporting HTTP/REST API at:{args.rest_api_host}:{rest_port} ...", flush=True)

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    poll_every = args.file_system_poll_wait_seconds
    while not stopped.wait(poll_every if poll_every > 0 else None):
        registry.poll()
    if rest is not None:
        rest.shutdown()
    server.stop(grace=2).wait()
    return 0
