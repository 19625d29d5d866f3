#!/usr/bin/env bash
# Regenerate the Python modules for voxgate's .proto files (committed next to
# them, so installing voxgate needs no protobuf compiler).
#
#   scripts/gen-protos.sh            write them into src/
#   scripts/gen-protos.sh OUT_DIR    write them into OUT_DIR instead (the unit
#                                    test compares such a copy with src/)
#
# The generated code checks at import time that the installed protobuf and
# grpcio are at least the versions of grpcio-tools that generated it, so run
# this with the grpcio-tools version the project's dependencies allow.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/src}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # absolute: the compiler runs from src/
python="${PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$python" ]; then
    python="$(command -v python3)"
fi

cd "$root/src"
protos=()
while IFS= read -r proto; do protos+=("$proto"); done < <(find voxgate -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    "${protos[@]}"
for proto in "${protos[@]}"; do
    for module in "$out/${proto%.proto}"_pb2*; do
        echo "src/$proto -> $module"
    done
done
