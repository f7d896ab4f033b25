#!/bin/sh
# Download the published CIFAR-100 teachers to save/models/<name>_vanilla/ckpt_epoch_240.pth
# and link them from checkpoints/cifar100/. Usage:
#   sh scripts/fetch_pretrained_teachers.sh [--save_root DIR] [--eval [--data_folder DIR]] [name ...]
# --eval prints each teacher's CIFAR-100 test accuracy beside the published one (-h: all options).
# Sources can be overridden with CRD_TEACHER_URL_PRIMARY ({name} template) and
# CRD_TEACHER_URL_MIRROR; the logic lives in helper/tools/fetch.py.
set -e
repo=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if [ -x "$repo/.venv/bin/python" ]; then
    python="$repo/.venv/bin/python"
else
    python=python3
fi
# Paths stay relative to where the user runs it (./save, as in the README); imports need the repo.
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m helper.tools.fetch "$@"
