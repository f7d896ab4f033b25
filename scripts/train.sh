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
# ---- DKD, DIST and logit standardization: the authors' settings per teacher -> student pair ----
# (each entry runs its pairs one after another; copy a printed line to run one pair)
dkd)      # DKD, mdistiller configs/cifar100/dkd: CE 1, alpha 1, T 4, warm-up 20 epochs; beta per pair
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet56 --path_t $CK/resnet56_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill dkd --dkd_beta 2 --trial 1
    # resnet110 -> resnet20: none published (mdistiller pairs resnet110 with resnet32 only)
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet32 --distill dkd --dkd_beta 2 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill dkd --dkd_beta 8 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_16_2 --distill dkd --dkd_beta 6 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_40_1 --distill dkd --dkd_beta 6 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s vgg8 --distill dkd --dkd_beta 6 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill dkd --dkd_beta 8 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill dkd --dkd_beta 8 --trial 1
    run train_student.py --model_t ResNet50 --path_t $CK/ResNet50_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dkd --dkd_beta 8 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dkd --dkd_beta 6 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill dkd --dkd_beta 8 --trial 1 ;;
dist)     # DIST, the one published CIFAR config (dist_cifar.yaml): DIST(1, 1, tau 4) at weight 2, CE 1.
          # Its schedule (lr constant to epoch 150, then x0.1 at 150/180/210) is the default here.
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet56 --path_t $CK/resnet56_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill dist --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill dist --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet32 --distill dist --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill dist --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_16_2 --distill dist --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_40_1 --distill dist --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s vgg8 --distill dist --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill dist --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill dist --trial 1
    run train_student.py --model_t ResNet50 --path_t $CK/ResNet50_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dist --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dist --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill dist --trial 1 ;;
kd_ls)    # KD + logit standardization: base temperature (--kd_T) and KD weight (-a) from the authors'
          # logs per pair, CE 0.1
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet56 --path_t $CK/resnet56_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill kd --logit_stand --kd_T 4 -r 0.1 -a 12 -b 0 --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet32 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_16_2 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_40_1 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s vgg8 --distill kd --logit_stand --kd_T 3 -r 0.1 -a 9 -b 0 --trial 1
    # resnet32x4 -> ShuffleV1: none published
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill kd --logit_stand --kd_T 2 -r 0.1 -a 9 -b 0 --trial 1
    run train_student.py --model_t ResNet50 --path_t $CK/ResNet50_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill kd --logit_stand --kd_T 3 -r 0.1 -a 1 -b 0 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill kd --logit_stand --kd_T 3 -r 0.1 -a 9 -b 0 --trial 1
    # wrn_40_2 -> ShuffleV1: none published
    ;;
dkd_ls)   # DKD + logit standardization: the authors' kd weight multiplies DKD's alpha and beta, which is
          # -b here; base temperature (--kd_T) and beta from their logs per pair; CE 1, warm-up 20
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet56 --path_t $CK/resnet56_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill dkd --logit_stand --kd_T 3 -b 18 --dkd_beta 2 --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill dkd --logit_stand --kd_T 2 -b 15 --dkd_beta 2 --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet32 --distill dkd --logit_stand --kd_T 2 -b 15 --dkd_beta 2 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill dkd --logit_stand --kd_T 2 -b 9 --dkd_beta 8 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_16_2 --distill dkd --logit_stand --kd_T 2 -b 12 --dkd_beta 2 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_40_1 --distill dkd --logit_stand --kd_T 2 -b 12 --dkd_beta 2 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s vgg8 --distill dkd --logit_stand --kd_T 2 -b 15 --dkd_beta 2 --trial 1
    # resnet32x4 -> ShuffleV1: none published
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill dkd --logit_stand --kd_T 2 -b 9 --dkd_beta 8 --trial 1
    run train_student.py --model_t ResNet50 --path_t $CK/ResNet50_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dkd --logit_stand --kd_T 2 -b 15 --dkd_beta 2 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s MobileNetV2 --distill dkd --logit_stand --kd_T 3 -b 9 --dkd_beta 2 --trial 1
    # wrn_40_2 -> ShuffleV1: none published
    ;;
dkd_mc)   # DKD + milestone checking on the BCS composition 3,7,2 (the seed README's MC form)
    run train_student.py --model_t resnet110 --path_t $T --distill dkd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
dist_mc)  # DIST + milestone checking, same form
    run train_student.py --model_t resnet110 --path_t $T --distill dist --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
# ---- end of the logit-method recipes ----
all)
    for m in kd hint attention similarity correlation vid rkd pkt abound factor fsp nst kdsvd crd crd_kd crd_mc; do
        bash "$0" $m
    done ;;
*) echo "usage: bash scripts/train.sh [teacher|kd|hint|...|crd|crd_kd|crd_mc|mc_all|all]" >&2; exit 2 ;;
esac
