#!/usr/bin/env bash
# The offline main job, on scikit-learn's digits set (no download): train a teacher, a student
# from scratch, a student distilled with CRD+MC, a short block composition search (BCS), then
# print the results table and draw the plots. CPU time about 7 minutes (one thread, slow VM
# core), 3 minutes on a server core; two threads cut the wall time by about 1/3.
# Creates or reuses .venv by itself. Results go to $DEMO_SAVE_ROOT (default ./save/demo),
# which is removed first: run folders refuse to be overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

SAVE="${DEMO_SAVE_ROOT:-./save/demo}"
TEACHER=wrn_40_1      # 6 blocks per stage: room for BCS to move myresnet14's blocks
TEACHER_EPOCHS=5
STUDENT=myresnet14    # base composition 2,2,2
STUDENT_EPOCHS=3
# Fixed seed; data kept on the device (no loader workers); channels_last is faster on CPUs too.
COMMON=(--dataset digits --num_workers 0 --data_on_device --channels_last --seed 0
        --batch_size 64 --learning_rate 0.1 --save_root "$SAVE")
STUDENT_SCHEDULE=(--epochs "$STUDENT_EPOCHS" --lr_decay_epochs $((STUDENT_EPOCHS - 1)) --trial demo)
# CRD+MC with the published weights (-a 0 -b 0.8, MC weight 0.001); 256 negatives suit 1,437 images.
DISTILL=(--model_t "$TEACHER" --model_s "$STUDENT" --block_depth 2,2,2 --distill crd --mc 1
         --mc_weight 0.001 -a 0 -b 0.8 --nce_k 256)

started=$SECONDS
step() {
    echo
    echo "=== [$(( SECONDS - started ))s] $* ==="
}

if [ -e "$SAVE" ]; then
    echo "note: removing the previous demo results in $SAVE"
    rm -rf "$SAVE"
fi

step "1/5 teacher: $TEACHER, $TEACHER_EPOCHS epochs"
"$PY" train_teacher.py --model "$TEACHER" --epochs "$TEACHER_EPOCHS" \
    --lr_decay_epochs $((TEACHER_EPOCHS - 1)) --trial demo "${COMMON[@]}"
PATH_T="$(ls "$SAVE"/models/"$TEACHER"_*/ckpt_epoch_"$TEACHER_EPOCHS".pth)"

step "2/5 student from scratch: $STUDENT, $STUDENT_EPOCHS epochs"
"$PY" train_teacher.py --model "$STUDENT" "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}"

step "3/5 student distilled with CRD+MC: $TEACHER -> $STUDENT [2,2,2]"
"$PY" train_student.py --path_t "$PATH_T" "${DISTILL[@]}" "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}"

# The same flags as step 3: the search reuses that run as its first candidate, (2,2,2).
step "4/5 block composition search over $STUDENT (CRD+MC)"
"$PY" search.py --path_t "$PATH_T" "${DISTILL[@]}" "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}"

step "5/5 results and plots"
"$PY" report.py "$SAVE" --out "$SAVE/report" --metric best --plot > "$SAVE/report.log"
"$PY" - "$SAVE" "$TEACHER" "$STUDENT" <<'EOF'
import glob
import json
import os
import sys

save, teacher, student = sys.argv[1:]


def load(pattern):
    paths = sorted(glob.glob(os.path.join(save, pattern)))
    if len(paths) != 1:
        sys.exit(f'error: expected one {pattern} under {save}, found {len(paths)}')
    with open(paths[0]) as f:
        return json.load(f), os.path.dirname(paths[0])


def depth(d):
    return '(' + ','.join(map(str, d)) + ')'


t, t_dir = load(f'models/{teacher}_*/summary.json')
s, s_dir = load(f'models/{student}_*/summary.json')
d, d_dir = load(f'student_model/S-{student}-2-2-2_*/summary.json')
bcs, bcs_dir = load('search/BCS_*/search.json')
w = bcs['winner']
visited = ', '.join(depth(c['block_depth']) for c in bcs['candidates'])
rows = [('teacher', f'{teacher}', t['params'], t['best_acc']),
        ('student from scratch', f'{student} (2,2,2)', s['params'], s['best_acc']),
        ('student distilled (CRD+MC)', f'{student} (2,2,2)', d['params'], d['best_acc']),
        ('BCS best composition (CRD+MC)', f'{student} {depth(w["block_depth"])}', w['params'],
         w['best_acc'])]
lines = ['| Run | Model | Params | Best test acc (%) |', '|---|---|---|---|']
lines += [f'| {r} | {m} | {p:,} | {a:.2f} |' for r, m, p, a in rows]
lines += ['', f'Digits (1,437 train / 360 test images). BCS visited {visited}; '
          f'winner {depth(w["block_depth"])}.']
plots = sorted(glob.glob(os.path.join(save, '**', '*.png'), recursive=True))
lines += ['', 'Plots:'] + [f'- {os.path.relpath(p, save)}' for p in plots]
text = '\n'.join(lines) + '\n'
with open(os.path.join(save, 'results.md'), 'w') as f:
    f.write(text)
print(text)
print(f'table written to {os.path.join(save, "results.md")}; full report: '
      f'{os.path.join(save, "report", "results.md")}')
EOF
echo "demo finished in $(( SECONDS - started ))s"
