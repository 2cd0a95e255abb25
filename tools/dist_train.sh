#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NPROC [train.py args...]
# Starts NPROC training processes on this node with torchrun: one per GPU, or,
# on a machine without GPUs, NPROC CPU processes over gloo. The run's log says
# which, e.g. "Processes: 2 (CPU, gloo)".
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. PYTHON: the interpreter
# (default: python, that of the active environment).
if [ $# -lt 2 ] || ! [[ $2 =~ ^([1-9][0-9]*|auto|gpu|cpu)$ ]]; then
    echo "usage: $0 CONFIG NPROC [train.py args...]" >&2
    echo "  NPROC: processes per node (a number, or torchrun's auto, gpu or" \
        "cpu), one per GPU, or CPU processes over gloo without GPUs" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

. "$(dirname "$0")/torchrun_python.sh"

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$NPROC \
    --master_port=$PORT \
    "$(dirname "$0")/train.py" \
    $CONFIG \
    --launcher pytorch ${@:3}
