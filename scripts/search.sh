#!/usr/bin/env bash
# Block composition search (BCS) on CIFAR-100: CRD-EMKD's scripts/search.sh, line for line, by name:
#   bash scripts/search.sh crd_mc       (the default)
#   bash scripts/search.sh list
# Fetch the teachers first: bash scripts/fetch_pretrained_teachers.sh
# Each search trains 6 full runs, one after the other (see README: BCS).
set -euo pipefail
cd "$(dirname "$0")/.."
T=./checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth

run() { echo "+ python $*"; "${PYTHON:-python}" "$@"; }

PUBLISHED="crd crd_mc"
EXTRA="crd_mc_fast"

case "${1:-crd_mc}" in
# ---- CRD-EMKD's scripts/search.sh ----
crd)
    run search.py --model_t resnet110 --path_t $T --distill crd --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
crd_mc)
    # --mc_weight is the default, 0.001
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
# ---- not in CRD-EMKD's script ----
crd_mc_fast)
    # cheaper: score candidates on 30 epochs, 4 GPUs in parallel, retrain the winner on 240
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 --search_epochs 30 --gpus 0,1,2,3 --fast ;;
list)
    echo "published: $PUBLISHED"; echo "other: $EXTRA" ;;
*)
    echo "usage: bash scripts/search.sh NAME|list; NAME is one of: $PUBLISHED $EXTRA" >&2
    exit 2 ;;
esac
