#!/usr/bin/env bash
# Reproduce a published CIFAR-100 table: every run it needs, N seeds each, then the comparison.
#   bash scripts/reproduce.sh TABLE [TEACHER:STUDENT ...] [--seeds 3] [--gpus 0,1,...] [--dry_run]
#                             [-- flags for every train_teacher.py/train_student.py run]
# Tables are the `table` column of scripts/published_results.csv. Rerun the same command to
# resume after an interruption. The logic lives in helper/tools/reproduce.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/scripts/venv.sh"
# Paths stay relative to where the user runs it, as for fetch_pretrained_teachers.sh.
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m helper.tools.reproduce "$@"
