"""CPU: one distillation step in fp32 against bf16 autocast + channels_last, alternating rounds.

    OMP_NUM_THREADS=1 python scripts/bench_cpu_bf16.py --pair resnet56:resnet20:kd --rounds 5

Both sides run the same StudentWithLoss on the same random batches (no data loading, no compile), so
the ratio is what native bf16 buys the step. Prints whether torch reports native bf16 here, which
is what --fast decides by.
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
from distiller_zoo import build_distiller  # noqa: E402
from distiller_zoo.base import feature_shapes  # noqa: E402
from helper.engine.cpu_bf16 import cpu_bf16_native  # noqa: E402
from helper.engine.loops import StudentWithLoss, forward_backward, teacher_forward  # noqa: E402
from helper.engine.options import finalize, student_parser  # noqa: E402


class _NoScale:
    @staticmethod
    def scale(x):
        return x


def side_modules(pair, bf16, batch_size):
    """(StudentWithLoss, teacher, batch, optimizer, autocast) of one side, in training mode."""
    teacher_name, student_name, method_name = pair
    argv = ['--model_t', teacher_name, '--path_t', 'unused.pth', '--model_s', student_name, '--distill',
            method_name, '--device', 'cpu']
    opt = finalize(student_parser().parse_args(argv), 'student')
    torch.manual_seed(0)
    student, teacher = models.build_model(student_name), models.build_model(teacher_name).eval()
    method = build_distiller(method_name, opt, feature_shapes(student), feature_shapes(teacher), 50000)
    step = StudentWithLoss(student, method)
    x = torch.randn(batch_size, 3, 32, 32)
    if bf16:
        step.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    batch = {'input': x, 'target': torch.randint(0, 100, (batch_size,)), 'index': torch.arange(batch_size),
             'contrast_idx': torch.randint(0, 50000, (batch_size, opt.nce_k + 1))}
    params = list(student.parameters()) + list(method.trainable.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    autocast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    step.train()
    return step, teacher, batch, optimizer, autocast


def side(pair, bf16, batch_size):
    step, teacher, batch, optimizer, autocast = side_modules(pair, bf16, batch_size)

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            teacher_out = teacher_forward(teacher, batch['input'], step.teacher_preact, autocast)
            forward_backward(step, batch, teacher_out, 1, autocast, optimizer, _NoScale)
            optimizer.step()
        return steps * batch_size / (time.perf_counter() - start)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pair', default='resnet56:resnet20:kd')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--rounds', type=int, default=5)
    args = p.parse_args(argv)
    pair = args.pair.split(':')
    sides = {'fp32': side(pair, False, args.batch_size), 'bf16+channels_last': side(pair, True, args.batch_size)}
    for run in sides.values():
        run(1)  # warm-up
    rates = {k: [] for k in sides}
    for r in range(args.rounds):
        for k, run in sides.items():
            rates[k].append(run(args.steps))
        print(f"round {r + 1}: " + ', '.join(f'{k} {v[-1]:.1f} img/s' for k, v in rates.items()), flush=True)
    fp32, bf16 = (float(np.median(v)) for v in rates.values())
    print(f'{pair[0]} -> {pair[1]} {pair[2].upper()}, batch {args.batch_size}, {torch.get_num_threads()} '
          f'thread(s); native bf16 here: {cpu_bf16_native()}; fp32 {fp32:.1f} img/s, bf16 + channels_last '
          f'{bf16:.1f} img/s: {bf16 / fp32:.2f}x (medians of {args.rounds} rounds)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
