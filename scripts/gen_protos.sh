#!/usr/bin/env bash
# Generate Python code and .pyi stubs for protos/ into gateway/_proto/ (or into $1).
#
# The generated files are committed; tests/test_protos_fresh.py runs this script into a temporary
# folder and fails if the committed files differ, so they can never drift from the .proto sources.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/gateway/_proto}"
python="${PYTHON:-$root/.venv/bin/python}"

mkdir -p "$out"
cd "$root/protos"
mapfile -t sources < <(find . -name '*.proto' -printf '%P\n' | LC_ALL=C sort)
"$python" -m grpc_tools.protoc -I . \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${sources[@]}"

# protoc writes absolute imports ("from tfserving import tensor_pb2"); make them package-relative
# to gateway._proto so the generated modules import from wherever the package is installed.
find "$out" -name '*.py' -o -name '*.pyi' | while read -r f; do
  sed -i -E \
    -e 's/^from tfserving import /from gateway._proto.tfserving import /' \
    -e 's/^import ([a-z_]+_pb2) as /from gateway._proto import \1 as /' "$f"
done
# grpc_python_out writes an empty *_pb2_grpc.py for files without services: drop those.
find "$out" -name '*_pb2_grpc.py' | while read -r f; do
  grep -q 'class ' "$f" || rm "$f"
done
touch "$out/__init__.py" "$out/tfserving/__init__.py"
