"""Cost of a co-trained BCS phase against separate runs, and of a whole search, from step times.

    python scripts/bench_cotrain.py                    # resnet110 -> myresnet20 CRD, current device
    python scripts/bench_cotrain.py --device cpu --steps 5 --rounds 3

Measures, on the fast path (--fast's settings for the device; --compile is off on the CPU unless
asked, to keep the run short), the teacher forward alone, and each candidate's student step
(forward, backward, CRD memory update, optimizer step) given the teacher's outputs. Then:
- a phase of N co-trained candidates costs one teacher forward plus N student steps per batch;
  the same phase as separate runs costs N teacher forwards plus N student steps. The phase is
  also timed directly, both ways, in alternating rounds;
- a search, in units of one run of the start composition alone: the published search trains
  every candidate alone; the co-trained one trains the start with phase 1 (BCS, helper/launch/bcs.py),
  then phase 2, each as one group. Per-epoch validation and checkpoints are left out.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
from dataset import get_loaders, loader_set_epoch  # noqa: E402
from distiller_zoo import build_distiller  # noqa: E402
from distiller_zoo.base import feature_shapes  # noqa: E402
from helper.engine.loops import StudentWithLoss, forward_backward, teacher_forward, to_device  # noqa: E402
from helper.engine.options import finalize, student_parser  # noqa: E402
from helper.engine.experiment import compile_modules, compile_teacher, make_autocast, make_optimizer, resolve_speed_flags  # noqa: E402
from helper.engine.util import pick_device  # noqa: E402
from scripts.bench import make_cifar100, sync  # noqa: E402

# resnet110 -> myresnet20: the start with phase 1, then phase 2 from (3,7,2) (the published order)
PHASES = [[(3, 3, 3), (3, 7, 2), (3, 11, 1)], [(7, 6, 2), (11, 5, 2), (15, 4, 2)]]


def options(args, root):
    argv = ['--model_t', 'resnet110', '--path_t', 'unused.pth', '--model_s', 'myresnet20', '--distill', 'crd',
            '--data_folder', root, '--batch_size', str(args.batch_size), '--device', args.device,
            '--seed', '0', '--fast']
    return finalize(student_parser().parse_args(argv), 'student')  # --fast: compile, so whole batches only


class Candidate:
    def __init__(self, opt, device, info, depth, compile_):
        torch.manual_seed(0)
        student = models.build_model('myresnet20', num_classes=info['num_classes'], block_depth=list(depth))
        self.depth = depth
        self.step = StudentWithLoss(student, build_distiller('crd', opt, feature_shapes(student), self.t_shapes,
                                                             info['n_data'])).to(device)
        self.step.to(memory_format=torch.channels_last)
        if compile_:
            compile_modules(device, self.step)
        params = list(student.parameters()) + list(self.step.method.trainable.parameters())
        self.optimizer = make_optimizer(params, opt, device)
        self.step.train()

    def train(self, batch, teacher_out, autocast, scaler):
        forward_backward(self.step, batch, teacher_out, 1, autocast, self.optimizer, scaler)
        scaler.step(self.optimizer)
        scaler.update()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='auto', choices=['auto', 'cuda', 'cpu'])
    p.add_argument('--steps', type=int, default=None, help='timed steps per round (default 100 CUDA, 4 CPU)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--compile', type=int, default=None, help='1: torch.compile (default: on CUDA only)')
    p.add_argument('--json', default=None)
    return p.parse_args(argv)


def measure(args, device, steps, compile_):
    """Seconds per step, one entry per round: the teacher forward, each candidate's student step,
    phase 1 as separate runs and co-trained; and the autocast dtype."""
    cuda = device.type == 'cuda'
    with tempfile.TemporaryDirectory() as root:
        make_cifar100(root, 50000 if cuda else 2000, 100)
        opt = options(args, root)
        opt, amp_dtype = resolve_speed_flags(opt, device)
        autocast = make_autocast(device, amp_dtype)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        loader, _, info = get_loaders(opt, device, True)  # CRD: contrastive indices
        teacher = models.build_model('resnet110', num_classes=info['num_classes']).to(device).eval()
        teacher.to(memory_format=torch.channels_last)
        Candidate.t_shapes = feature_shapes(teacher)
        if compile_:
            compile_teacher(device, teacher)
        loader_set_epoch(loader, 1)
        batches = [to_device(b, device, True) for _, b in zip(range(4), loader)]
        cands = {d: Candidate(opt, device, info, d, compile_) for phase in PHASES for d in phase}
        preact = next(iter(cands.values())).step.preact
        outs = [teacher_forward(teacher, b['input'], preact, autocast) for b in batches]

        def timed(fn):
            sync(device)
            start = time.perf_counter()
            for i in range(steps):
                fn(i % len(batches))
            sync(device)
            return (time.perf_counter() - start) / steps

        def teacher_only(i):
            teacher_forward(teacher, batches[i]['input'], preact, autocast)

        def student_only(c):
            return lambda i: c.train(batches[i], outs[i], autocast, scaler)

        def phase(depths, shared):
            def go(i):
                out = teacher_forward(teacher, batches[i]['input'], preact, autocast) if shared else None
                for d in depths:
                    own = out if shared else teacher_forward(teacher, batches[i]['input'], preact, autocast)
                    cands[d].train(batches[i], own, autocast, scaler)
            return go

        for fn in [teacher_only] + [student_only(c) for c in cands.values()]:
            fn(0)  # warm-up (compilation happens here)
        flops = {d: step_flops(student_only(c)) for d, c in cands.items()} if not compile_ else {}
        t_teacher, t_student, sep, tog = [], {d: [] for d in cands}, [], []
        for r in range(args.rounds):
            t_teacher.append(timed(teacher_only))
            for d, c in cands.items():
                t_student[d].append(timed(student_only(c)))
            sep.append(timed(phase(PHASES[0], shared=False)))
            tog.append(timed(phase(PHASES[0], shared=True)))
            print(f'round {r + 1}/{args.rounds}: phase 1 separate {sep[-1] * 1e3:.0f} ms/step, '
                  f'co-trained {tog[-1] * 1e3:.0f} ms/step', flush=True)
    return t_teacher, t_student, sep, tog, amp_dtype, flops


def step_flops(fn):
    """Floating-point operations of one student step (as torch counts them; eager modules only)."""
    with FlopCounterMode(display=False) as counter:
        fn(0)
    return counter.get_total_flops()


def summarise(args, device, compile_, t_teacher, t_student, sep, tog, amp_dtype, flops):
    """The figures as one record, in milliseconds and units of one run of the start composition."""
    med = float(np.median(t_teacher))
    stu = {d: float(np.median(v)) for d, v in t_student.items()}
    base = med + stu[PHASES[0][0]]
    alone = {d: med + s for d, s in stu.items()}
    groups = [med + sum(stu[d] for d in phase) for phase in PHASES]
    published = sum(alone[d] for phase in PHASES for d in phase) / base
    cotrained = sum(groups) / base
    short = 30 / 240
    return {
        'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({os.cpu_count()} cores)',
        'torch': torch.__version__, 'batch_size': args.batch_size, 'amp': str(amp_dtype), 'compile': compile_,
        'teacher_ms': med * 1e3, 'student_ms': {','.join(map(str, d)): s * 1e3 for d, s in stu.items()},
        'base_step_ms': base * 1e3, 'teacher_share_of_base_step': med / base,
        'phase1_measured_separate_ms': float(np.median(sep)) * 1e3,
        'phase1_measured_cotrained_ms': float(np.median(tog)) * 1e3,
        'phase1_measured_ratio': float(np.median(tog) / np.median(sep)),
        'phase1_from_step_times_ratio': groups[0] / sum(alone[d] for d in PHASES[0]),
        'search_full_published_units': published, 'search_full_cotrained_units': cotrained,
        'search_30_published_units': published * short + 1.0, 'search_30_cotrained_units': cotrained * short + 1.0,
        # where the co-trained search's cost goes: one teacher forward per batch and phase, and
        # every candidate's own student step (its floor, were the teacher free)
        'search_full_teacher_units': len(PHASES) * med / base,
        'search_full_students_units': sum(stu[d] for phase in PHASES for d in phase) / base,
        'student_step_vs_blocks': {','.join(map(str, d)): [sum(d), s / stu[PHASES[0][0]],
                                                           flops[d] / flops[PHASES[0][0]] if flops else None]
                                   for d, s in stu.items()},
    }


def print_summary(row):
    print(f"\ndevice {row['device']}; torch {row['torch']}; batch {row['batch_size']}; autocast {row['amp']}; "
          f"compile {row['compile']}")
    print(f"teacher forward {row['teacher_ms']:.1f} ms = {100 * row['teacher_share_of_base_step']:.0f}% of a "
          f"(3,3,3) step ({row['base_step_ms']:.1f} ms)")
    print('student steps, ms: ' + ', '.join(f'{k} {v:.1f}' for k, v in row['student_ms'].items()))
    print(f"phase of 3, co-trained / separate: measured {row['phase1_measured_ratio']:.2f}x "
          f"({row['phase1_measured_cotrained_ms']:.0f} vs {row['phase1_measured_separate_ms']:.0f} ms/step), "
          f"from step times {row['phase1_from_step_times_ratio']:.2f}x")
    print(f"search, units of one 240-epoch (3,3,3) run: every candidate 240 epochs: published "
          f"{row['search_full_published_units']:.2f}, co-trained {row['search_full_cotrained_units']:.2f}; "
          f"--search_epochs 30 (+1 for the winner's full run): published {row['search_30_published_units']:.2f}, "
          f"co-trained {row['search_30_cotrained_units']:.2f}")
    print(f"co-trained search {row['search_full_cotrained_units']:.2f} = teacher forwards "
          f"{row['search_full_teacher_units']:.2f} + candidates' student steps {row['search_full_students_units']:.2f} "
          f"(the floor were the teacher free)")
    print('student step against (3,3,3): ' + ', '.join(
        f'{k} ({n} blocks) time {r:.2f}x' + (f', FLOP {f:.2f}x' if f else '')
        for k, (n, r, f) in row['student_step_vs_blocks'].items()))


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == 'cuda'
    steps = args.steps or (100 if cuda else 4)
    compile_ = bool(cuda if args.compile is None else args.compile)
    row = summarise(args, device, compile_, *measure(args, device, steps, compile_))
    print_summary(row)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(row, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
