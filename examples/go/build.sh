#!/usr/bin/env bash
# Build the Go client with Debian's toolchain, in GOPATH mode (no module proxy here):
#   apt-get install golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc \
#                   golang-google-grpc-dev golang-google-protobuf-dev
#   bash examples/go/build.sh OUT_DIR      # → OUT_DIR/tfsclient
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$here/build}" && cd "${1:-$here/build}" && pwd)"
gopath="$out/gopath"
mkdir -p "$gopath/src/tfsclient"
protoc -I "$root/protos" --go_out="$gopath/src" --go-grpc_out="$gopath/src" classify.proto
cp "$here/tfsclient/main.go" "$gopath/src/tfsclient/"
cd "$gopath/src/tfsclient"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$out/cache" go build -o "$out/tfsclient" .
echo "$out/tfsclient"
