#!/usr/bin/env bash
# The main job: set up .venv, build the demo models, start the TF-Serving-compatible test server
# with them (gRPC :8500, REST :8501), and call it through the gateway's TF-free upstream client.
# The server keeps running afterwards; `bash scripts/demo.sh stop` stops it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
var="$root/var"
grpc_port="${GRPC_PORT:-8500}"
rest_port="${REST_PORT:-8501}"
export TF_CPP_MIN_LOG_LEVEL=2

stop_server() {
  if [ -f "$var/testserver.pid" ]; then
    kill "$(cat "$var/testserver.pid")" 2>/dev/null || true
    rm -f "$var/testserver.pid"
  fi
}
if [ "${1:-}" = "stop" ]; then stop_server; echo "demo: stopped"; exit 0; fi

bash scripts/setup.sh
mkdir -p "$var"
if [ ! -f "$var/models/models.config" ] || [ testserver/demo_models.py -nt "$var/models/models.config" ]; then
  echo "demo: building the demo models into var/models"
  rm -rf "$var/models"
  .venv/bin/python -m testserver.demo_models "$var/models" >"$var/build-models.log" 2>&1 || {
    echo "demo: building the models failed:" >&2; tail -20 "$var/build-models.log" >&2; exit 1; }
fi

stop_server
echo "demo: starting the test server (gRPC :$grpc_port, REST :$rest_port)"
.venv/bin/python -m testserver --port "$grpc_port" --rest_api_port "$rest_port" \
  --model_config_file "$var/models/models.config" >"$var/testserver.log" 2>&1 &
echo $! >"$var/testserver.pid"
for _ in $(seq 120); do
  if grep -q "Exporting HTTP/REST API" "$var/testserver.log"; then break; fi
  if ! kill -0 "$(cat "$var/testserver.pid")" 2>/dev/null; then
    echo "demo: the test server failed to start:" >&2; tail -20 "$var/testserver.log" >&2; exit 1
  fi
  sleep 0.5
done

.venv/bin/tfs-gateway describe colors --upstream "localhost:$grpc_port"
echo
.venv/bin/python examples/upstream_client.py "localhost:$grpc_port"
cat <<MSG

The test server is still running with the demo models (log: var/testserver.log):
  gRPC  localhost:$grpc_port   (tensorflow.serving.PredictionService, ModelService)
  REST  http://localhost:$rest_port/v1/models/colors
Stop it with: bash scripts/demo.sh stop
MSG
