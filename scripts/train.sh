#!/usr/bin/env bash
# The published CIFAR-100 recipes. Fetch the teachers first:
#   bash scripts/fetch_pretrained_teachers.sh
# Then run the lines you need (one GPU each), e.g.  bash scripts/train.sh crd
# Methods take their published weights; MC adds --mc 1 --mc_weight 0.001 to any of them.
set -euo pipefail
cd "$(dirname "$0")/.."
T=./checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth
S=resnet20

run() { echo "+ python $*"; python "$@"; }

# ImageNet (README: ImageNet): mdistiller's settings on NGPU GPUs (default 8) through torchrun
# (python -m torch.distributed.run). --batch_size is per GPU and --scale_lr multiplies the lr by the
# GPU count: on 8 GPUs batch 512 with lr 0.2 (KD), batch 256 with lr 0.1 (CRD), as published.
NGPU=${NGPU:-8}
DATA=${DATA:-./data}

case "${1:-all}" in
teacher)  # train a teacher yourself instead of fetching it
    run train_teacher.py --model resnet110 --trial 0 ;;
kd)       run train_student.py --model_t resnet110 --path_t $T --distill kd --model_s $S -r 0.1 -a 0.9 -b 0 --trial 1 ;;
hint)     run train_student.py --model_t resnet110 --path_t $T --distill hint --model_s $S -a 0 -b 100 --trial 1 ;;
attention) run train_student.py --model_t resnet110 --path_t $T --distill attention --model_s $S -a 0 -b 1000 --trial 1 ;;
similarity) run train_student.py --model_t resnet110 --path_t $T --distill similarity --model_s $S -a 0 -b 3000 --trial 1 ;;
correlation) run train_student.py --model_t resnet110 --path_t $T --distill correlation --model_s $S -a 0 -b 0.02 --trial 1 ;;
vid)      run train_student.py --model_t resnet110 --path_t $T --distill vid --model_s $S -a 0 -b 1 --trial 1 ;;
rkd)      run train_student.py --model_t resnet110 --path_t $T --distill rkd --model_s $S -a 0 -b 1 --trial 1 ;;
pkt)      run train_student.py --model_t resnet110 --path_t $T --distill pkt --model_s $S -a 0 -b 30000 --trial 1 ;;
abound)   run train_student.py --model_t resnet110 --path_t $T --distill abound --model_s $S -a 0 -b 1 --trial 1 ;;
factor)   run train_student.py --model_t resnet110 --path_t $T --distill factor --model_s $S -a 0 -b 200 --trial 1 ;;
fsp)      run train_student.py --model_t resnet110 --path_t $T --distill fsp --model_s $S -a 0 -b 50 --trial 1 ;;
nst)      run train_student.py --model_t resnet110 --path_t $T --distill nst --model_s $S -a 0 -b 50 --trial 1 ;;
kdsvd)    run train_student.py --model_t resnet110 --path_t $T --distill kdsvd --model_s $S --trial 1 ;;
crd)      # the seed README's example
    run train_student.py --model_t resnet110 --path_t $T --distill crd --model_s $S -a 0 -b 0.8 --trial 1 ;;
crd_kd)   run train_student.py --model_t resnet110 --path_t $T --distill crd --model_s $S -a 1 -b 0.8 --trial 1 ;;
crd_mc)   # CRD + milestone checking on the BCS composition 3,7,2 (seed README)
    run train_student.py --model_t resnet110 --path_t $T --distill crd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 0.8 --trial 1 ;;
mc_all)   # every method with MC on the myresnet20 3,7,2 student
    for m in kd hint attention similarity correlation vid rkd pkt abound factor fsp nst kdsvd crd; do
        run train_student.py --model_t resnet110 --path_t $T --distill $m --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1
    done ;;
# ---- ImageNet: the published rows (teachers: torchvision's IMAGENET1K_V1 weights) ----
imagenet_kd_r34_r18)   # 71.03 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
imagenet_crd_r34_r18)  # 71.17 (CRD paper, mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill crd -r 1 -a 0 -b 0.8 --nce_k 16384 --batch_size 32 --learning_rate 0.0125 --scale_lr --trial 1 ;;
imagenet_kd_r50_mv1)   # 70.50 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
imagenet_crd_r50_mv1)  # 71.37 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill crd -r 1 -a 0 -b 0.8 --nce_k 16384 --batch_size 32 --learning_rate 0.0125 --scale_lr --trial 1 ;;
imagenet_dkd_r34_r18|imagenet_dkd_r50_mv1)  # 71.70 / 72.05 (mdistiller)
    # mdistiller: CE 1.0, DKD alpha 1.0, beta 0.5 (r34->r18) or 2.0 (r50->mv1), T 1, 1 warm-up
    # epoch, batch 512 as for KD. Needs --distill dkd in distiller_zoo.
    echo "$1: --distill dkd is not in this version of distiller_zoo" >&2; exit 2 ;;
all)
    for m in kd hint attention similarity correlation vid rkd pkt abound factor fsp nst kdsvd crd crd_kd crd_mc; do
        bash "$0" $m
    done ;;
*) echo "usage: bash scripts/train.sh [teacher|kd|hint|...|crd|crd_kd|crd_mc|mc_all|all|imagenet_kd_r34_r18|...]" >&2; exit 2 ;;
esac
