#!/usr/bin/env bash
# CRD-EMKD's CIFAR-100 recipes (its scripts/train.sh, line for line), one per name:
#   bash scripts/train.sh attention_mc      one recipe
#   bash scripts/train.sh crd --trial 2 --epochs 1    arguments after the name are appended
#   bash scripts/train.sh all               every published line, in the published order
#   bash scripts/train.sh list              the names, by group, with what each trains
# Fetch the teachers first: bash scripts/fetch_pretrained_teachers.sh (or the `teacher` recipe).
# Runs in the project's .venv (created if needed, as demo.sh and test.sh do); PYTHON=... overrides it.
# Each published method runs alone on resnet20 (NAME) and with MC on myresnet20 3,7,2 (NAME_mc),
# at the published -a/-b and per-method --mc_weight; -r is 1, the published default.
# A new recipe is one more case below, `name)  # what it trains` (and its name in PUBLISHED if `all`
# should run it); `list` reads the groups and descriptions from this file.
set -euo pipefail
cd "$(dirname "$0")/.."
T=./checkpoints/cifar100/resnet110_vanilla/ckpt_epoch_240.pth

source scripts/recipes.sh

# The teacher recipe's checkpoint, linked where the distillation recipes read it (T).
link_teacher() {
    if [ -e "$T" ]; then
        echo "note: $T exists (left as it is); the teacher just trained is $1" >&2
    elif [ -f "$1" ]; then
        mkdir -p "$(dirname "$T")"
        ln -s "$(pwd)/${1#./}" "$T"
        echo "linked $T -> $1: the distillation recipes read it" >&2
    else
        echo "note: no $1 (other --epochs, --trial or --save_root?): link your checkpoint to $T" \
             "for the distillation recipes" >&2
    fi
}

# ImageNet (docs/imagenet.md): mdistiller's settings on NGPU GPUs (default 8) through torchrun
# (python -m torch.distributed.run). --batch_size is per GPU and --scale_lr multiplies the lr by the
# GPU count: on 8 GPUs batch 512 with lr 0.2 (KD), batch 256 with lr 0.1 (CRD), as published.
NGPU=${NGPU:-8}
DATA=${DATA:-./data}

PUBLISHED="kd kd_mc hint hint_mc attention attention_mc similarity similarity_mc correlation correlation_mc
  vid vid_mc rkd rkd_mc pkt pkt_mc abound abound_mc factor factor_mc fsp fsp_mc nst nst_mc crd crd_mc"
EXTRA="kd_repdistiller crd_kd kdsvd teacher imagenet_kd_r34_r18 imagenet_crd_r34_r18 imagenet_kd_r50_mv1
  imagenet_crd_r50_mv1 imagenet_dkd_r34_r18 imagenet_dkd_r50_mv1
  dkd dist kd_ls dkd_ls dkd_mc dist_mc reviewkd ofd kd_dot reviewkd_mc ofd_mc kd_dot_mc
  imagenet_kd_dot_r34_r18 imagenet_kd_dot_r50_mv1"

case "$RECIPE" in
# ---- published: CRD-EMKD's scripts/train.sh, teacher resnet110 (`all` runs these) ----
kd)  # CE alone on resnet20: published with -a 0, no KD term (KD itself: kd_repdistiller)
    # --distill kd with -a 0 -b 0.8: KD has no method loss, so -b weighs nothing either.
    run train_student.py --model_t resnet110 --path_t $T --distill kd --model_s resnet20 -a 0 -b 0.8 --trial 1 ;;
kd_mc)  # CE + MC on myresnet20 3,7,2: published with -a 0, no KD term
    # cross-entropy plus 0.8 x 0.001 x MC
    run train_student.py --model_t resnet110 --path_t $T --distill kd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 0.8 --trial 1 ;;
hint)  # CE + FitNets hint on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill hint --model_s resnet20 -a 0 -b 100 --trial 1 ;;
hint_mc)  # CE + FitNets hint + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill hint --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 100 --trial 1 ;;
attention)  # CE + attention transfer (AT) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill attention --model_s resnet20 -a 0 -b 1000 --trial 1 ;;
attention_mc)  # CE + attention transfer (AT) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill attention --mc 1 --mc_weight 0.0001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 1000 --trial 1 ;;
similarity)  # CE + similarity preserving (SP) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill similarity --model_s resnet20 -a 0 -b 3000 --trial 1 ;;
similarity_mc)  # CE + similarity preserving (SP) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill similarity --mc 1 --mc_weight 0.00001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 3000 --trial 1 ;;
correlation)  # CE + correlation congruence (CC) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill correlation --model_s resnet20 -a 0 -b 0.02 --trial 1 ;;
correlation_mc)  # CE + correlation congruence (CC) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill correlation --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 0.02 --trial 1 ;;
vid)  # CE + variational information distillation (VID) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill vid --model_s resnet20 -a 0 -b 1 --trial 1 ;;
vid_mc)  # CE + variational information distillation (VID) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill vid --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 1 --trial 1 ;;
rkd)  # CE + relational KD (RKD) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill rkd --model_s resnet20 -a 0 -b 1 --trial 1 ;;
rkd_mc)  # CE + relational KD (RKD) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill rkd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 1 --trial 1 ;;
pkt)  # CE + probabilistic knowledge transfer (PKT) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill pkt --model_s resnet20 -a 0 -b 30000 --trial 1 ;;
pkt_mc)  # CE + probabilistic knowledge transfer (PKT) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill pkt --mc 1 --mc_weight 0.000001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 30000 --trial 1 ;;
abound)  # CE + activation boundaries (AB) on resnet20, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill abound --model_s resnet20 -a 0 -b 1 --trial 1 ;;
abound_mc)  # CE + activation boundaries (AB) + MC on myresnet20 3,7,2, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill abound --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 1 --trial 1 ;;
factor)  # CE + factor transfer (FT) on resnet20, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill factor --model_s resnet20 -a 0 -b 200 --trial 1 ;;
factor_mc)  # CE + factor transfer (FT) + MC on myresnet20 3,7,2, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill factor --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 200 --trial 1 ;;
fsp)  # CE + FSP on resnet20, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill fsp --model_s resnet20 -a 0 -b 50 --trial 1 ;;
fsp_mc)  # CE + FSP + MC on myresnet20 3,7,2, after its init stage
    run train_student.py --model_t resnet110 --path_t $T --distill fsp --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 50 --trial 1 ;;
nst)  # CE + neuron selectivity transfer (NST) on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill nst --model_s resnet20 -a 0 -b 50 --trial 1 ;;
nst_mc)  # CE + neuron selectivity transfer (NST) + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill nst --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 50 --trial 1 ;;
crd)  # CE + CRD on resnet20
    run train_student.py --model_t resnet110 --path_t $T --distill crd --model_s resnet20 -a 0 -b 0.8 --trial 1 ;;
crd_mc)  # CE + CRD + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill crd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 0.8 --trial 1 ;;
# ---- more CIFAR-100 recipes (not in CRD-EMKD's script) ----
kd_repdistiller)  # RepDistiller's KD on resnet20: 0.1 x CE + 0.9 x KD at T = 4
    run train_student.py --model_t resnet110 --path_t $T --distill kd --model_s resnet20 -r 0.1 -a 0.9 -b 0 --trial 1 ;;
crd_kd)  # RepDistiller's CRD+KD on resnet20: CE + KD + CRD
    run train_student.py --model_t resnet110 --path_t $T --distill crd --model_s resnet20 -a 1 -b 0.8 --trial 1 ;;
kdsvd)  # CE + KD-SVD on resnet20 (no published weights: -r 1 -a 0 -b 1)
    run train_student.py --model_t resnet110 --path_t $T --distill kdsvd --model_s resnet20 --trial 1 ;;
teacher)  # the resnet110 teacher with CE, linked where the recipes above read it
    # instead of fetching it; an existing checkpoint there is left alone
    run train_teacher.py --model resnet110 --trial 0
    link_teacher ./save/models/resnet110_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth ;;
# ---- ImageNet: the published rows (teachers: torchvision's IMAGENET1K_V1 weights) ----
imagenet_kd_r34_r18)   # KD resnet34 -> resnet18, 8 GPUs; published 71.03 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
imagenet_crd_r34_r18)  # CRD resnet34 -> resnet18, 8 GPUs; published 71.17 (CRD paper, mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill crd -r 1 -a 0 -b 0.8 --nce_k 16384 --batch_size 32 --learning_rate 0.0125 --scale_lr --trial 1 ;;
imagenet_kd_r50_mv1)   # KD resnet50 -> MobileNetV1, 8 GPUs; published 70.50 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
imagenet_crd_r50_mv1)  # CRD resnet50 -> MobileNetV1, 8 GPUs; published 71.37 (mdistiller)
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill crd -r 1 -a 0 -b 0.8 --nce_k 16384 --batch_size 32 --learning_rate 0.0125 --scale_lr --trial 1 ;;
imagenet_dkd_r34_r18)  # DKD resnet34 -> resnet18, 8 GPUs; published 71.70 (mdistiller)
    # CE 1, DKD alpha 1, beta 0.5, T 1, 1 warm-up epoch
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill dkd -r 1 -a 0 -b 1 --dkd_alpha 1 --dkd_beta 0.5 --dkd_T 1 --dkd_warmup 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
imagenet_dkd_r50_mv1)  # DKD resnet50 -> MobileNetV1, 8 GPUs; published 72.05 (mdistiller)
    # CE 1, DKD alpha 1, beta 2, T 1, 1 warm-up epoch
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill dkd -r 1 -a 0 -b 1 --dkd_alpha 1 --dkd_beta 2 --dkd_T 1 --dkd_warmup 1 --batch_size 64 --learning_rate 0.025 --scale_lr --trial 1 ;;
# ---- DKD, DIST and logit standardization: the authors' settings per teacher -> student pair ----
# (each entry runs its pairs one after another; copy a printed line to run one pair)
dkd)      # CE + DKD, 11 teacher -> student pairs one after another (mdistiller's settings)
    # mdistiller configs/cifar100/dkd: CE 1, alpha 1, T 4, warm-up 20 epochs; beta per pair
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
dist)     # CE + DIST, 12 teacher -> student pairs one after another (the authors' settings)
    # DIST, the one published CIFAR config (dist_cifar.yaml): DIST(1, 1, tau 4) at weight 2, CE 1.
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
kd_ls)    # 0.1 CE + KD with logit standardization, 10 pairs one after another (the authors' settings)
    # base temperature (--kd_T) and KD weight (-a) from the authors' logs per pair
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
dkd_ls)   # CE + DKD with logit standardization, 10 pairs one after another (the authors' settings)
    # the authors' kd weight multiplies DKD's alpha and beta, which is -b here; base temperature
    # (--kd_T) and beta from their logs per pair; CE 1, warm-up 20
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
dkd_mc)   # CE + DKD + MC on myresnet20 3,7,2 (the seed README's MC form)
    run train_student.py --model_t resnet110 --path_t $T --distill dkd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
dist_mc)  # CE + DIST + MC on myresnet20 3,7,2
    run train_student.py --model_t resnet110 --path_t $T --distill dist --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
# ---- end of the logit-method recipes ----
# ---- ReviewKD, OFD and DOT (mdistiller): CE 1, lr 0.05 (0.01 for ShuffleV1/V2), batch 64 ----
reviewkd) # ReviewKD: the loss weight (-b) per pair from its authors' CIFAR-100/script/reviewKD.sh
          # (5 in mdistiller's reviewkd.yaml); warm-up 20 epochs
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet56 --path_t $CK/resnet56_vanilla/ckpt_epoch_240.pth --model_s resnet20 --distill reviewkd -b 0.6 --trial 1
    run train_student.py --model_t resnet110 --path_t $CK/resnet110_vanilla/ckpt_epoch_240.pth --model_s resnet32 --distill reviewkd -b 1 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill reviewkd -b 5 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_16_2 --distill reviewkd -b 5 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s wrn_40_1 --distill reviewkd -b 5 --trial 1
    run train_student.py --model_t wrn_40_2 --path_t $CK/wrn_40_2_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill reviewkd -b 5 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV1 --distill reviewkd -b 5 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill reviewkd -b 8 --trial 1 ;;
ofd)      # OFD, mdistiller's ofd.yaml (its one CIFAR config): feature weight 0.001, 1x1 connectors
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill ofd -b 0.001 --trial 1 ;;
kd_dot)   # KD + DOT, mdistiller configs/cifar100/dot: KD (CE 0.1, KD 0.9, T 4), delta 0.075
    CK=./checkpoints/cifar100
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s resnet8x4 --distill kd -r 0.1 -a 0.9 -b 0 --optimizer dot --dot_delta 0.075 --trial 1
    run train_student.py --model_t vgg13 --path_t $CK/vgg13_vanilla/ckpt_epoch_240.pth --model_s vgg8 --distill kd -r 0.1 -a 0.9 -b 0 --optimizer dot --dot_delta 0.075 --trial 1
    run train_student.py --model_t resnet32x4 --path_t $CK/resnet32x4_vanilla/ckpt_epoch_240.pth --model_s ShuffleV2 --distill kd -r 0.1 -a 0.9 -b 0 --optimizer dot --dot_delta 0.075 --trial 1 ;;
imagenet_kd_dot_r34_r18)   # 71.72 (mdistiller README): its KD recipe (imagenet_kd_r34_r18) with DOT, delta 0.09
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet34 --model_s resnet18_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --optimizer dot --dot_delta 0.09 --trial 1 ;;
imagenet_kd_dot_r50_mv1)   # 73.09 (mdistiller README): its KD recipe (imagenet_kd_r50_mv1) with DOT, delta 0.09
    run -m torch.distributed.run --standalone --nproc_per_node $NGPU train_student.py --dataset imagenet --data_folder $DATA \
        --epochs 100 --lr_decay_epochs 30,60,90 --weight_decay 1e-4 --momentum 0.9 --save_freq 10 --data_on_device \
        --path_t torchvision:resnet50 --model_s mobilenetv1_imagenet --distill kd -r 0.5 -a 0.5 -b 0 --kd_T 1 --batch_size 64 --learning_rate 0.025 --scale_lr --optimizer dot --dot_delta 0.09 --trial 1 ;;
reviewkd_mc) # ReviewKD + milestone checking on the BCS composition 3,7,2 (the seed README's MC form)
    run train_student.py --model_t resnet110 --path_t $T --distill reviewkd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
ofd_mc)   # OFD + milestone checking, same form
    run train_student.py --model_t resnet110 --path_t $T --distill ofd --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
kd_dot_mc) # KD + DOT + MC on myresnet20 3,7,2: MC joins the distillation momentum; -b 1 scales MC alone
           # (KD has no method term)
    run train_student.py --model_t resnet110 --path_t $T --distill kd -r 0.1 -a 0.9 -b 1 --optimizer dot --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,7,2 --trial 1 ;;
# ---- end of the mdistiller recipes ----
# ---- groups ----
all)
    for name in $PUBLISHED; do bash "$0" "$name" "${EXTRA_ARGS[@]}"; done ;;
list)
    list_recipes "$0" ;;
*)
    echo "usage: bash scripts/train.sh NAME|all [ARGS appended to its commands] | list (what each trains);" \
         "NAME is one of: $(echo $PUBLISHED $EXTRA)" >&2
    exit 2 ;;
esac
