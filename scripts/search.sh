#!/usr/bin/env bash
# Block composition search (BCS) on CIFAR-100: CRD-EMKD's scripts/search.sh, line for line, by name:
#   bash scripts/search.sh crd_mc       (the default)
#   bash scripts/search.sh crd_mc --trial 2 --search_epochs 30    arguments after the name are appended
#   bash scripts/search.sh list         the names, by group, with what each searches
# Fetch the teachers first: bash scripts/fetch_pretrained_teachers.sh
# Runs in the project's .venv (created if needed, as demo.sh and test.sh do); PYTHON=... overrides it.
# Each search trains 6 full runs, one after the other (docs/search.md).
set -euo pipefail
cd "$(dirname "$0")/.."
T=./checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth

# no name, or arguments only: the default recipe
if [ $# -eq 0 ] || [[ "$1" == -* ]]; then set -- crd_mc "$@"; fi
source scripts/recipes.sh

PUBLISHED="crd crd_mc"
EXTRA="crd_mc_fast"

case "$RECIPE" in
# ---- published: CRD-EMKD's scripts/search.sh, teacher resnet110, from myresnet20 3,3,3 ----
crd)  # CE + CRD (-a 0: no KD term), 240 epochs per candidate
    run search.py --model_t resnet110 --path_t $T --distill crd --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
crd_mc)  # CE + CRD + MC (-a 0: no KD term), 240 epochs per candidate; the default
    # --mc_weight is the default, 0.001
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
# ---- more searches (not in CRD-EMKD's script) ----
crd_mc_fast)  # crd_mc scored on 30 epochs, 4 GPUs in parallel, the winner retrained on 240 epochs
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 --search_epochs 30 --gpus 0,1,2,3 --fast ;;
# ---- groups ----
list)
    list_recipes "$0" ;;
*)
    echo "usage: bash scripts/search.sh [NAME] [ARGS appended to its command] | list (what each searches);" \
         "NAME is one of: $PUBLISHED $EXTRA (default crd_mc)" >&2
    exit 2 ;;
esac
