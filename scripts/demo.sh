#!/usr/bin/env bash
# The offline main job, on scikit-learn's digits set (no download), in the setting distillation is
# for: a teacher trained on all 1,437 training digits teaches a student that sees only 10 labelled
# digits per class. The student is trained from scratch, with KD and with CRD+MC (3 seeds each, to
# tell an effect from seed noise), then a short block composition search (BCS); it prints the
# results table, whether distillation beat training from scratch, and draws the plots. About 5
# minutes on 2 CPU cores (docs/demo.md).
# Creates or reuses .venv by itself (PYTHON=... overrides it); DEMO_LANES=N runs N at a time
# (default: the CPU count). Results go to $DEMO_SAVE_ROOT (default ./save/demo), a folder
# of the demo's own (marked by the file .made-by-demo): a rerun removes it first, since run folders
# refuse to be overwritten. A folder the demo did not make is never removed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; else source scripts/venv.sh; fi

SAVE="${DEMO_SAVE_ROOT:-./save/demo}"
TEACHER=wrn_40_1      # 6 blocks per stage: room for BCS to move myresnet14's blocks
TEACHER_EPOCHS=5
STUDENT=myresnet14    # base composition 2,2,2
STUDENT_EPOCHS=40
PER_CLASS=10          # labelled digits per class the student sees (the teacher saw all of them)
# Fixed seed; data kept on the device (no loader workers); channels_last is faster on CPUs too.
COMMON=(--dataset digits --num_workers 0 --data_on_device --channels_last --seed 0
        --batch_size 64 --learning_rate 0.1 --save_root "$SAVE")
# A constant learning rate (the default decay epochs lie past the end).
STUDENT_SCHEDULE=(--epochs "$STUDENT_EPOCHS" --train_per_class "$PER_CLASS" --trial demo)
SEEDS=(0 1 2)
# KD with the published weights (RepDistiller: -r 0.1 -a 0.9 -b 0, T 4).
KD=(--model_t "$TEACHER" --model_s "$STUDENT" --distill kd -r 0.1 -a 0.9 -b 0)
# CRD+MC with the published weights (-a 0 -b 0.8, MC weight 0.001); 64 negatives suit 100 images.
DISTILL=(--model_t "$TEACHER" --model_s "$STUDENT" --block_depth 2,2,2 --distill crd --mc 1
         --mc_weight 0.001 -a 0 -b 0.8 --nce_k 64)

started=$SECONDS
step() {
    echo
    echo "=== [$(( SECONDS - started ))s] $* ==="
}

# Runs go LANES at a time, one thread each: on small batches two single-threaded runs finish
# sooner than two runs one after the other on two threads, and one thread makes the results
# the same on every machine. Each run's output goes to its own log under $SAVE/logs.
LANES="${DEMO_LANES:-$(nproc 2>/dev/null || echo 2)}"
case "$LANES" in
    '' | *[!0-9]* | 0*) echo "error: DEMO_LANES must be a whole number from 1 up, not '$LANES'" >&2; exit 2 ;;
esac
PIDS=() NAMES=() LOGS=() LAUNCHED=0  # by launch number: PIDS loses a run's entry when it ends

finish_one() {  # $1: index into PIDS; the run's outcome in one line, or its log's end and exit 1
    local i=$1 rc=0
    wait "${PIDS[$i]}" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "[$(( SECONDS - started ))s] FAILED (exit $rc): ${NAMES[$i]}; the end of ${LOGS[$i]}:" >&2
        tail -n 20 "${LOGS[$i]}" >&2
        stop_all
        exit "$rc"
    fi
    echo "[$(( SECONDS - started ))s] done: ${NAMES[$i]}: $(grep -E '^(\[BCS\] )?(best accuracy|winner)' "${LOGS[$i]}" | tail -n 1 | sed -E 's/; (summary: |\.?\/).*//')"
    unset "PIDS[$i]"
}

wait_below() {  # wait until fewer than $1 runs are going
    local i running
    while :; do
        running=0
        for i in "${!PIDS[@]}"; do
            if kill -0 "${PIDS[$i]}" 2>/dev/null; then running=$((running + 1)); else finish_one "$i"; fi
        done
        [ "$running" -lt "$1" ] && return
        sleep 1
    done
}

stop_all() {  # a stopped demo stops its runs too (each writes its checkpoint)
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT TERM

launch() {  # $1: a name, $2: its log's name, then the command
    local name=$1 log="$SAVE/logs/$2.log"
    shift 2
    wait_below "$LANES"
    echo "[$(( SECONDS - started ))s] start: $name (log: $log)"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$@" > "$log" 2>&1 &
    PIDS[LAUNCHED]=$! NAMES[LAUNCHED]=$name LOGS[LAUNCHED]=$log
    LAUNCHED=$((LAUNCHED + 1))
}

MARKER="$SAVE/.made-by-demo"
if [ -e "$SAVE" ] && [ -n "$(ls -A "$SAVE" 2>/dev/null || echo not-a-folder)" ]; then
    if [ -L "$SAVE" ] || [ ! -f "$MARKER" ] || [ -L "$MARKER" ]; then
        echo "error: $SAVE exists and was not made by the demo (no $MARKER); set DEMO_SAVE_ROOT to a new folder" >&2
        exit 2
    fi
    echo "note: removing the previous demo results in $SAVE"
    rm -rf "$SAVE"
fi
mkdir -p "$SAVE/logs"
: > "$MARKER"

step "1/3 teacher $TEACHER on all training digits ($TEACHER_EPOCHS epochs), and student $STUDENT from scratch on $PER_CLASS digits per class ($STUDENT_EPOCHS epochs), seeds ${SEEDS[*]}; $LANES runs at a time"
launch "teacher $TEACHER" teacher "$PY" train_teacher.py --model "$TEACHER" --epochs "$TEACHER_EPOCHS" \
    --lr_decay_epochs $((TEACHER_EPOCHS - 1)) --trial demo "${COMMON[@]}"
for seed in "${SEEDS[@]}"; do
    launch "from scratch, seed $seed" "scratch-seed$seed" "$PY" train_teacher.py --model "$STUDENT" \
        "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}" --seed "$seed" --trial "demo-seed$seed"
done
wait_below 1
PATH_T="$(ls "$SAVE"/models/"$TEACHER"_*/ckpt_epoch_"$TEACHER_EPOCHS".pth)"

step "2/3 block composition search over $STUDENT [2,2,2] with CRD+MC, and students distilled with KD and CRD+MC, seeds ${SEEDS[*]}"
# The search is the longest job: first. Its first candidate (2,2,2) is the CRD+MC run of seed 0.
launch "BCS over $STUDENT (CRD+MC, seed 0)" search "$PY" search.py --path_t "$PATH_T" "${DISTILL[@]}" \
    "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}"
for seed in "${SEEDS[@]:1}"; do
    launch "CRD+MC, seed $seed" "crd-seed$seed" "$PY" train_student.py --path_t "$PATH_T" "${DISTILL[@]}" \
        "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}" --seed "$seed" --trial "demo-seed$seed"
done
for seed in "${SEEDS[@]}"; do
    launch "KD, seed $seed" "kd-seed$seed" "$PY" train_student.py --path_t "$PATH_T" "${KD[@]}" \
        "${STUDENT_SCHEDULE[@]}" "${COMMON[@]}" --seed "$seed" --trial "demo-seed$seed"
done
wait_below 1
trap - INT TERM

step "3/3 results and plots"
"$PY" report.py "$SAVE" --out "$SAVE/report" --metric best --plot > "$SAVE/report.log"
"$PY" - "$SAVE" "$TEACHER" "$STUDENT" "$PER_CLASS" <<'EOF'
import glob
import json
import math
import os
import statistics
import sys

save, teacher, student, per_class = sys.argv[1:]


def runs(pattern, count=1):
    paths = sorted(glob.glob(os.path.join(save, pattern)))
    if len(paths) != count:
        sys.exit(f'error: expected {count} {pattern} under {save}, found {len(paths)}')
    out = []
    for path in paths:
        with open(path) as f:
            out.append(json.load(f))
    return out


def depth(d):
    return '(' + ','.join(map(str, d)) + ')'


def cell(values):
    if len(values) == 1:
        return f'{values[0]:.2f} (1)'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)})'


t, = runs(f'models/{teacher}_*/summary.json')
scratch = runs(f'models/{student}_*/summary.json', 3)
kd = runs(f'student_model/S-{student}*_kd_*/summary.json', 3)
crd = runs(f'student_model/S-{student}-2-2-2_*_crd_mc-*/summary.json', 3)
bcs, = runs('search/BCS_*/search.json')
w = bcs['winner']
visited = ', '.join(depth(c['block_depth']) for c in bcs['candidates'])
labelled = f'{per_class} labelled digits per class ({10 * int(per_class)} images)'
rows = [('teacher', f'{teacher}', t['params'], [t['best_acc']]),
        ('student from scratch', f'{student} (2,2,2)', scratch[0]['params'], [r['best_acc'] for r in scratch]),
        ('student distilled (KD)', f'{student} (2,2,2)', kd[0]['params'], [r['best_acc'] for r in kd]),
        ('student distilled (CRD+MC)', f'{student} (2,2,2)', crd[0]['params'], [r['best_acc'] for r in crd]),
        ('BCS best composition (CRD+MC)', f'{student} {depth(w["block_depth"])}', w['params'],
         [w['best_acc']])]
lines = [f'The teacher learned from all 1,437 training digits; every student sees only {labelled}, '
         f'for {crd[0]["epochs"]} epochs. Test set: 360 digits.', '',
         '| Run | Model | Params | Best test acc (%): mean ± std (seeds) |', '|---|---|---|---|']
lines += [f'| {r} | {m} | {p:,} | {cell(a)} |' for r, m, p, a in rows]


def versus(name, runs_of):
    """Does the method beat training from scratch? Only a difference beyond twice its standard
    error counts."""
    a, b = [r['best_acc'] for r in runs_of], [r['best_acc'] for r in scratch]
    delta = statistics.mean(a) - statistics.mean(b)
    noise = 2 * math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    setting = f'for a student with {labelled} and a teacher that saw them all'
    if abs(delta) <= noise:
        return f'{name} vs scratch: {delta:+.2f} points, within seed noise (±{noise:.2f}): no measurable help {setting}.'
    word = 'helps' if delta > 0 else 'hurts'
    return f'{name} vs scratch: {delta:+.2f} points, beyond seed noise (±{noise:.2f}): {name} {word} {setting}.'


lines += ['', versus('KD', kd), versus('CRD+MC', crd), '',
          f'Digits (1,437 train / 360 test images), {t["epochs"]} teacher epochs. Scratch, KD and CRD+MC: '
          f'3 seeds each; BCS: one seed. BCS visited {visited}; winner {depth(w["block_depth"])}.']
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
