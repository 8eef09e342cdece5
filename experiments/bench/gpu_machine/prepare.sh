#!/usr/bin/env bash
# Fill gpu-carry/ (ignored by git) with what a GPU machine without flwr, Hydra, a registry or
# the internet needs for the GPU checks of issue #13 (experiments/bench/gpu_machine/check.sh):
# the Python 3.12 wheels of flwr, Hydra and those of their dependencies that such a machine
# lacks (its image has torch, numpy, grpcio, protobuf, rich, typer, httpx, pytest, ...:
# ../.library/device/KINDS.md), pinned to the versions of this project's .venv, and
# Fashion-MNIST's four files. About 50 MB; the device tool carries at most 64 MiB.
#   bash experiments/bench/gpu_machine/prepare.sh     # here, with the package registry
set -euo pipefail
cd "$(dirname "$0")/../../.."
PIP=.venv/bin/pip
DEST=gpu-carry
rm -rf "$DEST" && mkdir -p "$DEST/wheels" "$DEST/fmnist"
names='flwr|hydra-core|omegaconf|cryptography|cffi|pycparser|pycryptodome|iterators|tomli|tomli[-_]w'
names+='|grpcio[-_]health[-_]checking|alembic|annotated[-_]types|fastapi|mako|prompt[-_]toolkit|pydantic'
names+='|pydantic[-_]core|sqlalchemy|starlette|typing[-_]inspection|uvicorn|wcwidth'
mapfile -t pins < <("$PIP" freeze 2>/dev/null | grep -i -E "^(${names})==")
# antlr4 4.9.3 (Hydra's pin) is published only as source: build its pure-Python wheel here
"$PIP" wheel -q --no-deps -w "$DEST/wheels" antlr4-python3-runtime==4.9.3 2>&1 | grep -v '^WARNING: Location' || true
"$PIP" download -q --no-deps --python-version 3.12 --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d "$DEST/wheels" "${pins[@]}" 2>&1 | grep -v '^WARNING: Location' || true
src=/usr/share/datasets/fashion-mnist   # Debian's dataset-fashion-mnist
if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
    echo "error: $src has no Fashion-MNIST: apt-get install dataset-fashion-mnist" >&2
    exit 2
fi
cp "$src"/*-ubyte.gz "$DEST/fmnist/"
echo "$(ls "$DEST/wheels" | wc -l) wheels ($(printf '%s ' "${pins[@]}")antlr4-python3-runtime==4.9.3)"
du -sh "$DEST"
