#!/usr/bin/env bash
# Block composition search (BCS) on CIFAR-100. Fetch the teachers first:
#   bash scripts/fetch_pretrained_teachers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T=./checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth
run() { echo "+ python $*"; python "$@"; }

case "${1:-crd_mc}" in
crd_mc)   # the seed README's example: 6 full runs, one after the other
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
crd)      run search.py --model_t resnet110 --path_t $T --distill crd --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 ;;
kd_mc)    run search.py --model_t resnet110 --path_t $T --distill kd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,3,3 -r 0.1 -a 0.9 -b 1 --trial 1 ;;
fast)     # cheaper: score on 30 epochs, 4 GPUs in parallel, retrain the winner on 240
    run search.py --model_t resnet110 --path_t $T --distill crd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1 --search_epochs 30 --gpus 0,1,2,3 --fast ;;
*) echo "usage: bash scripts/search.sh [crd_mc|crd|kd_mc|fast]" >&2; exit 2 ;;
esac
