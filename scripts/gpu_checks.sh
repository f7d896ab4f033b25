#!/usr/bin/env bash
# The GPU checks, in order of importance, bounded to about 7.5 minutes in all:
#   1. the whole resnet110 -> resnet20 CRD --fast run (240 epochs, generated 50,000-image set),
#      timed from its start to its summary.json (cut at RUN_LIMIT seconds: then epochs done and
#      seconds per epoch are reported instead);
#   2. scripts/gpu_checks.py: --step_graph and co-training against eager/alone on CUDA, and the
#      co-trained phase benchmark.
# Usage: bash scripts/gpu_checks.sh [OUT_DIR]   (results: OUT_DIR/gpu_checks.json, OUT_DIR/*.log)
# Env: N_IMAGES (50000), EPOCHS (240), RUN_LIMIT (330 s), CHECKS_LIMIT (110 s), RUN_FLAGS (extra flags,
#      e.g. --step_graph), SKIP_RUN=1 (checks only), CHECKS (e.g. bench_cotrain: compiling its seven
#      models may need a call of its own, CHECKS_LIMIT=400)
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-./gpu_checks_out}}
mkdir -p "$OUT"
PY=${PYTHON:-python}
EPOCHS=${EPOCHS:-240}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# data and a resnet110 teacher checkpoint (untrained: the timing does not depend on its weights)
$PY - "$WORK" <<'PYEOF'
import os, sys, torch
sys.path.insert(0, '.')
from scripts.bench import make_cifar100
import models
root = sys.argv[1]
make_cifar100(os.path.join(root, "data"), int(os.environ.get("N_IMAGES", 50000)), 10000)
t = os.path.join(root, 'save', 'models', 'resnet110_vanilla')
os.makedirs(t)
torch.manual_seed(0)
torch.save({'model': models.build_model('resnet110').state_dict(), 'epoch': 240}, os.path.join(t, 'ckpt_epoch_240.pth'))
PYEOF

if [ "${SKIP_RUN:-0}" != 1 ]; then
start=$(date +%s.%N)
timeout "${RUN_LIMIT:-330}" $PY train_student.py --path_t "$WORK/save/models/resnet110_vanilla/ckpt_epoch_240.pth" \
    --distill crd --model_s resnet20 -a 0 -b 0.8 --trial 1 --fast --epochs "$EPOCHS" \
    --data_folder "$WORK/data" --save_root "$WORK/save" --seed 0 --print_freq 100000 ${RUN_FLAGS:-} \
    > "$OUT/run240.log" 2>&1
code=$?
end=$(date +%s.%N)
$PY - "$WORK" "$start" "$end" "$code" "$OUT/run240.json" <<'PYEOF'
import glob, json, sys
work, start, end, code, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
found = glob.glob(f'{work}/save/student_model/*/summary.json')
s = json.load(open(found[0])) if found else {}
r = {'exit_code': code, 'wall_s_command': round(end - start, 1), 'status': s.get('status'),
     'epochs_done': s.get('epochs_done'), 'epochs': s.get('epochs'), 'wall_time_s_summary': s.get('wall_time_s')}
rows = glob.glob(f'{work}/save/student_model/*/log.csv')
if rows:
    n = len(open(rows[0]).read().splitlines()) - 1
    r['epochs_logged'] = n
if s.get('epochs_done'):
    r['s_per_epoch_incl_startup'] = round(r['wall_s_command'] / s['epochs_done'], 3)
print('run240', json.dumps(r))
json.dump(r, open(out, 'w'), indent=2)
PYEOF
fi

timeout "${CHECKS_LIMIT:-110}" $PY scripts/gpu_checks.py --out "$OUT/gpu_checks.json" ${CHECKS:+--only "$CHECKS"} \
    > "$OUT/gpu_checks.log" 2>&1
echo "checks exit code $?"
tail -n 5 "$OUT/gpu_checks.log"
