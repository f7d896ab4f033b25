"""CPU: where one distillation step's time goes, published settings against the fast path, and the
most the fast path could gain on this CPU.

    python scripts/profile_cpu_step.py --pair resnet56:resnet20:kd --rounds 5

Both sides run the same StudentWithLoss on the same random batch (no data loading): the published
side in fp32 with an eager teacher, the fast side as --fast runs it on a CPU with native bf16 (bf16
autocast, channels_last, the teacher compiled frozen unless --eager_teacher). Each part of a step
is timed in alternating rounds (medians) and its floating-point work counted, and the CPU's own
bf16 and fp32 matrix-multiply rates are measured with the same threads. The ceiling is the fast
step if every part ran at the bf16 matrix-multiply rate: no change of kernels, threads or graphs
can take a step below it. A torch profile of the fast step splits its time by operator kind.
"""
import argparse
import os
import sys
import time

import numpy as np

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helper.engine.cpu_bf16 import cpu_bf16_native  # noqa: E402
from helper.engine.experiment import compile_teacher  # noqa: E402
from helper.engine.loops import teacher_forward  # noqa: E402
from scripts.bench_cpu_bf16 import side_modules  # noqa: E402

PARTS = ('teacher forward', 'student forward and loss', 'backward', 'optimizer step')
KINDS = (('convolution', ('conv',)), ('batch norm', ('batch_norm',)),
         ('matrix multiply', ('addmm', 'mm', 'bmm', 'linear')))


class Side:
    """One side's step, timed part by part."""

    def __init__(self, pair, fast, batch_size, eager_teacher):
        self.step, self.teacher, self.batch, self.optimizer, self.autocast = side_modules(pair, fast, batch_size)
        if fast and not eager_teacher:
            compile_teacher(torch.device('cpu'), self.teacher)

    def parts(self):
        """One step; the seconds of each part."""
        marks = [time.perf_counter()]
        t_feats, t_logit = teacher_forward(self.teacher, self.batch['input'], self.step.teacher_preact,
                                           self.autocast)
        marks.append(time.perf_counter())
        with self.autocast():
            _, terms = self.step(self.batch, t_feats, t_logit, 1)
        marks.append(time.perf_counter())
        self.optimizer.zero_grad(set_to_none=True)
        terms[0].backward()
        marks.append(time.perf_counter())
        self.optimizer.step()
        marks.append(time.perf_counter())
        return np.diff(marks)

    def flops(self):
        """Floating-point operations of each part (convolutions and matrix products, as torch counts)."""
        counts = []
        with FlopCounterMode(display=False) as counter:
            t_out = teacher_forward(self.teacher, self.batch['input'], self.step.teacher_preact, self.autocast)
        counts.append(counter.get_total_flops())
        with FlopCounterMode(display=False) as counter:
            with self.autocast():
                _, terms = self.step(self.batch, *t_out, 1)
        counts.append(counter.get_total_flops())
        self.optimizer.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            terms[0].backward()
        counts.append(counter.get_total_flops())
        return counts + [0]


def matmul_rate(dtype, n=1024, repeats=5):
    """The CPU's matrix-multiply rate in GFLOP/s for dtype, with this process's threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float('inf')
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n ** 3 / best / 1e9


def operator_split(side, steps=5):
    """The fast step's CPU time (ms per step) by operator kind, from torch's profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            side.parts()
    totals = {name: 0.0 for name, _ in KINDS}
    totals['everything else'] = 0.0
    for event in prof.key_averages():
        if not event.key.startswith('aten::'):
            continue
        kind = next((name for name, keys in KINDS if any(k in event.key for k in keys)), 'everything else')
        totals[kind] += event.self_cpu_time_total / 1000.0 / steps
    return totals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pair', default='resnet56:resnet20:kd', help='TEACHER:STUDENT:METHOD')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--steps', type=int, default=5, help='steps per side and round')
    p.add_argument('--eager_teacher', action='store_true', help='do not compile the fast side\'s teacher')
    args = p.parse_args(argv)
    pair = args.pair.split(':')
    sides = {'published': Side(pair, False, args.batch_size, True),
             'fast': Side(pair, True, args.batch_size, args.eager_teacher)}
    for side in sides.values():
        for _ in range(2):
            side.parts()  # warm-up (the frozen teacher compiles here)
    times = {k: [] for k in sides}
    rates = {'fp32': [], 'bf16': []}  # in every round: a busy machine slows both alike
    for r in range(args.rounds):
        for k, side in sides.items():
            times[k] += [side.parts() for _ in range(args.steps)]
        rates['fp32'].append(matmul_rate(torch.float32))
        rates['bf16'].append(matmul_rate(torch.bfloat16))
        print(f'round {r + 1} of {args.rounds}', flush=True)
    ms = {k: np.median(np.array(v), axis=0) * 1000 for k, v in times.items()}
    gflop = np.array(sides['published'].flops(), dtype=float) / 1e9
    peak = {k: float(np.median(v)) for k, v in rates.items()}
    report(args, pair, ms, gflop, peak, operator_split(sides['fast']))
    return 0


def report(args, pair, ms, gflop, peak, split):
    pub, fast = ms['published'], ms['fast']
    print(f'\n{pair[0]} -> {pair[1]} {pair[2].upper()}, batch {args.batch_size}, {torch.get_num_threads()} '
          f'thread(s), torch {torch.__version__}; native bf16: {cpu_bf16_native()}; medians of '
          f'{args.rounds} rounds x {args.steps} steps')
    print(f'matrix multiply (1024 x 1024): fp32 {peak["fp32"]:.0f} GFLOP/s, bf16 {peak["bf16"]:.0f} GFLOP/s\n')
    print('| part | GFLOP | published ms | published GFLOP/s | fast ms | fast GFLOP/s | fast at the bf16 rate, ms |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, g, a, b in zip(PARTS, gflop, pub, fast):
        rate = lambda t: f'{g / t * 1000:.0f}' if g else '—'  # noqa: E731
        print(f'| {name} | {g:.2f} | {a:.1f} | {rate(a)} | {b:.1f} | {rate(b)} | {g / peak["bf16"] * 1000:.1f} |')
    floor = gflop.sum() / peak['bf16'] * 1000
    print(f'| whole step | {gflop.sum():.2f} | {pub.sum():.1f} | {gflop.sum() / pub.sum() * 1000:.0f} | '
          f'{fast.sum():.1f} | {gflop.sum() / fast.sum() * 1000:.0f} | {floor:.1f} |')
    print(f'\nfast step: {pub.sum() / fast.sum():.2f}x the published step; ceiling (all work at the bf16 '
          f'matrix-multiply rate): {pub.sum() / floor:.2f}x')
    print('\nfast step by operator kind (torch profiler, self CPU time):\n')
    print('| operators | ms per step | share |')
    print('|---|---:|---:|')
    total = sum(split.values())
    for name, value in split.items():
        print(f'| {name} | {value:.1f} | {value / total:.0%} |')


if __name__ == '__main__':
    sys.exit(main())
