#!/usr/bin/env bash
# The main job: set up .venv, build the demo models, start the TF-Serving-compatible test server
# with them (gRPC :8500, REST :8501) and the gateway in front of it (gRPC :9000, web page and
# HTTP API :8080, metrics :9100), then classify and detect generated images through the gateway. Both keep running afterwards;
# `bash scripts/demo.sh stop` stops them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
var="$root/var"
tfs_port="${TFS_PORT:-8500}"
rest_port="${REST_PORT:-8501}"
gateway_port="${GATEWAY_PORT:-9000}"
metrics_port="${METRICS_PORT:-9100}"
http_port="${HTTP_PORT:-8080}"
export TF_CPP_MIN_LOG_LEVEL=2

stop() {
  for name in gateway testserver; do
    if [ -f "$var/$name.pid" ]; then
      kill "$(cat "$var/$name.pid")" 2>/dev/null || true
      rm -f "$var/$name.pid"
    fi
  done
}
# wait_for NAME LOGFILE PATTERN: until PATTERN is in LOGFILE, or fail if NAME's process died.
wait_for() {
  for _ in $(seq 240); do
    if grep -q "$3" "$2"; then return 0; fi
    if ! kill -0 "$(cat "$var/$1.pid")" 2>/dev/null; then
      echo "demo: $1 failed to start:" >&2; tail -20 "$2" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "demo: $1 did not start in 2 minutes:" >&2; tail -20 "$2" >&2; exit 1
}
if [ "${1:-}" = "stop" ]; then stop; echo "demo: stopped"; exit 0; fi

bash scripts/setup.sh
mkdir -p "$var"
if [ ! -f "$var/models/models.config" ] || [ testserver/demo_models.py -nt "$var/models/models.config" ]; then
  echo "demo: building the demo models into var/models"
  rm -rf "$var/models"
  .venv/bin/python -m testserver.demo_models "$var/models" >"$var/build-models.log" 2>&1 || {
    echo "demo: building the models failed:" >&2; tail -20 "$var/build-models.log" >&2; exit 1; }
fi
.venv/bin/python examples/make_images.py "$var/images" >/dev/null

stop
echo "demo: starting the TF-Serving-compatible test server (gRPC :$tfs_port, REST :$rest_port)"
.venv/bin/python -m testserver --port "$tfs_port" --rest_api_port "$rest_port" \
  --model_config_file "$var/models/models.config" >"$var/testserver.log" 2>&1 &
echo $! >"$var/testserver.pid"
wait_for testserver "$var/testserver.log" "Exporting HTTP/REST API"

echo "demo: starting the gateway (gRPC :$gateway_port, HTTP :$http_port, metrics :$metrics_port)"
.venv/bin/tfs-gateway serve --config "$var/models/gateway.toml" --upstream "localhost:$tfs_port" \
  --port "$gateway_port" --http-port "$http_port" --metrics-port "$metrics_port" \
  >"$var/gateway.log" 2>&1 &
echo $! >"$var/gateway.pid"
wait_for gateway "$var/gateway.log" "tfs-gateway serving on"

gw=(--gateway "localhost:$gateway_port")
echo
.venv/bin/tfs-gateway models "${gw[@]}"
echo
.venv/bin/tfs-gateway classify "${gw[@]}" --model colors var/images/red.jpg var/images/green.png var/images/blue.webp
.venv/bin/tfs-gateway classify "${gw[@]}" --model colors --version 1 --top-k 1 var/images/framed.png
.venv/bin/tfs-gateway classify "${gw[@]}" --model colors --version 2 --top-k 1 var/images/framed.png
.venv/bin/tfs-gateway classify "${gw[@]}" --model colors_bytes --top-k 1 var/images/red.jpg
echo
.venv/bin/tfs-gateway detect "${gw[@]}" --model shapes var/images/scene.png var/images/scene-rotated.jpg
cat <<MSG

Running, with the demo models (logs in var/):
  web page     http://localhost:$http_port/   (upload an image; HTTP API: /openapi.json)
  gateway      localhost:$gateway_port   tfsgateway.v1.ImageGateway, grpc.health.v1, reflection
  metrics      http://localhost:$metrics_port/metrics
  TF Serving   localhost:$tfs_port (gRPC), http://localhost:$rest_port/v1/models/colors (REST)
Try:  .venv/bin/tfs-gateway classify --model colors YOUR.jpg
      curl --data-binary @var/images/scene.png "http://localhost:$http_port/v1/models/shapes:detect"
      .venv/bin/python examples/classify_client.py var/images/red.jpg
Stop: bash scripts/demo.sh stop
MSG
