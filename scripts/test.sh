#!/usr/bin/env bash
# Run the whole test suite on the CPU. Creates or reuses .venv by itself.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k crd
# The fast tier (no test that trains whole epochs or starts processes):  bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
# one thread per process: predictable on small machines, and the DDP/kill tests run several processes
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m pytest -q -p no:cacheprovider --durations=15 tests "$@"
