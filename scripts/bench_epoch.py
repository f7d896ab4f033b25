"""Whole epochs: train_student.py as published (no speed flags) against train_student.py --fast.

    python scripts/bench_epoch.py                           # resnet56 -> resnet20 KD, 3 epochs, 2 rounds
    python scripts/bench_epoch.py --pair resnet110:resnet20:crd --images 10000 --epochs 3
    python scripts/bench_epoch.py --process --images 1280 --epochs 1 --rounds 3   # whole short runs

Both sides are the real command on the same generated CIFAR-100-layout set (train and test) with an
untrained teacher checkpoint (the time does not depend on the teacher's weights), the same
settings (batch 64, the default workers) and the same seed. Each side's epoch times come from its
log lines (training and evaluation). The fast side runs --fast --compile, what a run long enough
to repay compilation gets; epoch 1 holds the compilation, so the steady state is the median of
epochs 2 and on. Rounds alternate the two sides, so load from other jobs hits both.
--process times whole processes instead (start to exit, start-up included), with --fast as a user
types it (it compiles only where that pays): the question for short runs, so one epoch is allowed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
from scripts.bench import make_cifar100  # noqa: E402

EPOCH_LINE = re.compile(r'epoch (\d+)/\d+: .* \| ([0-9.]+) s$')


def epoch_times(work, teacher, student, method, epochs, flags, tag):
    save = os.path.join(work, f'save_{tag}')
    cmd = [sys.executable, os.path.join(ROOT, 'train_student.py'), '--model_t', teacher,
           '--path_t', os.path.join(work, 'teacher.pth'), '--model_s', student, '--distill', method,
           '--epochs', str(epochs), '--data_folder', os.path.join(work, 'data'), '--save_root', save,
           '--seed', '0', '--print_freq', '100000', '--trial', tag] + flags
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - started
    if out.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed with exit code {out.returncode}:\n{out.stderr[-2000:]}')
    times = [float(m.group(2)) for m in map(EPOCH_LINE.search, out.stdout.splitlines()) if m]
    if len(times) != epochs:
        sys.exit(f'expected {epochs} epoch lines, found {len(times)}:\n{out.stdout[-2000:]}')
    decision = [line for line in out.stdout.splitlines() if line.startswith('--fast: ')]
    return times, wall, decision


def bench_set(work, teacher, images):
    n_test = max(100, images // 5)
    make_cifar100(os.path.join(work, 'data'), images, n_test)
    torch.manual_seed(0)
    torch.save({'model': models.build_model(teacher).state_dict(), 'epoch': 240},
               os.path.join(work, 'teacher.pth'))
    return n_test


def alternate(args):
    """Both sides, alternating for args.rounds: {side: [(epoch times, process seconds, decision lines)]}."""
    teacher, student, method = args.pair.split(':')
    sides = {'published': [], 'fast': []}
    fast = ['--fast'] if args.process else ['--fast', '--compile']
    with tempfile.TemporaryDirectory() as work:
        n_test = bench_set(work, teacher, args.images)
        for r in range(args.rounds):
            for side, runs in sides.items():
                runs.append(epoch_times(work, teacher, student, method, args.epochs, fast if side == 'fast' else [],
                                        f'{side}{r}'))
                times, wall, _ = runs[-1]
                print(f'round {r + 1}/{args.rounds} {side:<9}: ' + ', '.join(f'{t:.1f}' for t in times)
                      + f' s (process {wall:.1f} s)', flush=True)
    return sides, n_test


def process_row(args, sides):
    """Whole processes: medians and their ratio, and what --fast chose."""
    walls = {side: [wall for _, wall, _ in runs] for side, runs in sides.items()}
    med = {side: float(np.median(w)) for side, w in walls.items()}
    decisions = [line for _, _, lines in sides['fast'] for line in lines]
    for line in sorted(set(decisions)):
        print(line)
    print(f"whole {args.epochs}-epoch process: published {med['published']:.1f} s, --fast {med['fast']:.1f} s: "
          f"{med['published'] / med['fast']:.2f}x")
    return {'process_s': walls, 'median_process_s': med, 'speedup': med['published'] / med['fast'],
            'fast_decisions': decisions}


def steady_row(args, sides, n_test):
    times = {side: [t for t, _, _ in runs] for side, runs in sides.items()}
    steady = {side: float(np.median([t for run in runs for t in run[1:]])) for side, runs in times.items()}
    speedup = steady['published'] / steady['fast']
    print(f"steady-state epoch ({args.images} images + {n_test} test): published "
          f"{steady['published']:.1f} s, --fast --compile {steady['fast']:.1f} s: {speedup:.2f}x")
    return {'epoch_times_s': times, 'steady_epoch_s': steady, 'speedup': speedup}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pair', default='resnet56:resnet20:kd', help='teacher:student:method')
    p.add_argument('--images', type=int, default=8000, help='generated train images (test: a fifth)')
    p.add_argument('--epochs', type=int, default=3, help='per run; epochs 2 and on are the steady state')
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--json', default=None)
    p.add_argument('--process', action='store_true', help='time whole processes (one epoch allowed)')
    args = p.parse_args(argv)
    if args.epochs < 2 and not args.process:
        p.error('--epochs must be at least 2: epoch 1 holds the compilation')
    sides, n_test = alternate(args)
    row = {'pair': args.pair, 'images': args.images, 'test_images': n_test, 'epochs': args.epochs,
           'rounds': args.rounds,
           'device': torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU ({os.cpu_count()} cores)'}
    row.update(process_row(args, sides) if args.process else steady_row(args, sides, n_test))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(row, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
