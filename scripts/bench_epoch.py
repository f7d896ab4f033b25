"""Whole epochs: train_student.py as published (no speed flags) against train_student.py --fast.

    python scripts/bench_epoch.py                           # resnet56 -> resnet20 KD, 3 epochs, 2 rounds
    python scripts/bench_epoch.py --pair resnet110:resnet20:crd --images 10000 --epochs 3

Both sides are the real command on the same generated CIFAR-100-layout set (train and test) with an
untrained teacher checkpoint (the time does not depend on the teacher's weights), the same
settings (batch 64, the default workers) and the same seed. Each side's epoch times come from its
log lines (training and evaluation). Epoch 1 holds --fast's compilation, so the steady state is
the median of epochs 2 and on. Rounds alternate the two sides, so load from other jobs hits both.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
from scripts.bench import make_cifar100  # noqa: E402

EPOCH_LINE = re.compile(r'epoch (\d+)/\d+: .* \| ([0-9.]+) s$')


def epoch_times(work, teacher, student, method, epochs, fast, tag):
    save = os.path.join(work, f'save_{tag}')
    cmd = [sys.executable, os.path.join(ROOT, 'train_student.py'), '--model_t', teacher,
           '--path_t', os.path.join(work, 'teacher.pth'), '--model_s', student, '--distill', method,
           '--epochs', str(epochs), '--data_folder', os.path.join(work, 'data'), '--save_root', save,
           '--seed', '0', '--print_freq', '100000', '--trial', tag] + (['--fast'] if fast else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed with exit code {out.returncode}:\n{out.stderr[-2000:]}')
    times = [float(m.group(2)) for m in map(EPOCH_LINE.search, out.stdout.splitlines()) if m]
    if len(times) != epochs:
        sys.exit(f'expected {epochs} epoch lines, found {len(times)}:\n{out.stdout[-2000:]}')
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pair', default='resnet56:resnet20:kd', help='teacher:student:method')
    p.add_argument('--images', type=int, default=8000, help='generated train images (test: a fifth)')
    p.add_argument('--epochs', type=int, default=3, help='per run; epochs 2 and on are the steady state')
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--json', default=None)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error('--epochs must be at least 2: epoch 1 holds the compilation')
    teacher, student, method = args.pair.split(':')
    sides = {'published': [], 'fast': []}
    n_test = max(100, args.images // 5)
    with tempfile.TemporaryDirectory() as work:
        make_cifar100(os.path.join(work, 'data'), args.images, n_test)
        torch.manual_seed(0)
        torch.save({'model': models.build_model(teacher).state_dict(), 'epoch': 240},
                   os.path.join(work, 'teacher.pth'))
        for r in range(args.rounds):
            for side in sides:
                times = epoch_times(work, teacher, student, method, args.epochs, side == 'fast', f'{side}{r}')
                sides[side].append(times)
                print(f'round {r + 1}/{args.rounds} {side:<9}: ' + ', '.join(f'{t:.1f}' for t in times) + ' s',
                      flush=True)
    steady = {side: float(np.median([t for run in runs for t in run[1:]])) for side, runs in sides.items()}
    row = {'pair': args.pair, 'images': args.images, 'epochs': args.epochs, 'rounds': args.rounds,
           'device': torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU ({os.cpu_count()} cores)',
           'epoch_times_s': sides, 'steady_epoch_s': steady, 'speedup': steady['published'] / steady['fast']}
    print(f"steady-state epoch ({args.images} images + {n_test} test): published "
          f"{steady['published']:.1f} s, --fast {steady['fast']:.1f} s: {row['speedup']:.2f}x")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(row, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
