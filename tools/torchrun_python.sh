# Sourced by dist_train.sh and dist_test.sh: PYTHON is the environment's
# Python (the active environment's "python", or PYTHON), and it must have
# torch, since torchrun is started with it.
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c 'import importlib.util as u, sys
sys.exit(u.find_spec("torch") is None)' 2>/dev/null; then
    echo "error: $0 starts torchrun with '$PYTHON'" \
        "($(command -v "$PYTHON" || echo 'not found')), which has no torch." \
        "Activate the environment first (source" \
        "$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/activate;" \
        "tools/setup_env.sh creates it) or name its Python:" \
        "PYTHON=/path/to/python $0 ..." >&2
    exit 1
fi
