"""Training throughput: the published-equivalent loop against the fast path, same process, same data.

    python scripts/bench.py                 # current device, the three standard pairs
    python scripts/bench.py --json out.json --steps 50 --rounds 5

Published-equivalent: fp32, DataLoader with per-image PIL transforms in worker processes, and a
host sync every step (the published meters call .item() on the loss and accuracy).
Fast path: the train set on the device with crop/flip there, channels_last, no per-step syncs,
plus bf16/fp16 autocast and torch.compile on CUDA (what --fast turns on).
Both paths run the same StudentWithLoss module; the data is a generated CIFAR-100-layout set. Each pair runs
in its own process; within it, timed rounds of the two paths alternate and the medians are reported.
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
from dataset import get_loaders, loader_set_epoch  # noqa: E402
from distiller_zoo import METHODS, build_distiller  # noqa: E402
from distiller_zoo.base import feature_shapes  # noqa: E402
from helper.engine.loops import StudentWithLoss, forward_backward, teacher_forward, to_device  # noqa: E402
from helper.engine.options import finalize, student_parser  # noqa: E402
from helper.engine.experiment import compile_modules, compile_teacher, make_autocast, make_optimizer, resolve_speed_flags  # noqa: E402
from helper.engine.teacher_batch import batched_teacher_forward  # noqa: E402
from helper.engine.util import pick_device  # noqa: E402

PAIRS = [('resnet56', 'resnet20', 'kd'), ('resnet110', 'resnet20', 'crd'), ('resnet32x4', 'resnet8x4', 'kd')]


def make_cifar100(root, n_train, n_test=1000, seed=0):
    """Random images in the CIFAR-100 python-pickle layout (same format the real files have)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    for split, n in (('train', n_train), ('test', n_test)):
        labels = np.arange(n) % 100
        blob = {'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8), 'fine_labels': labels.tolist(),
                'coarse_labels': (labels // 5).tolist(), 'filenames': [f'{i}.png' for i in range(n)]}
        with open(os.path.join(folder, split), 'wb') as f:
            pickle.dump(blob, f)
    with open(os.path.join(folder, 'meta'), 'wb') as f:
        pickle.dump({'fine_label_names': [f'c{i}' for i in range(100)],
                     'coarse_label_names': [f'g{i}' for i in range(20)]}, f)


def options(teacher, student, method, data_folder, device_name, fast, batch_size):
    argv = ['--model_t', teacher, '--path_t', 'unused.pth', '--model_s', student, '--distill', method,
            '--data_folder', data_folder, '--batch_size', str(batch_size), '--device', device_name,
            '--seed', '0']
    opt = finalize(student_parser().parse_args(argv + (['--fast'] if fast else [])), 'student')
    return opt


def build(opt, device, info):
    student = models.build_model(opt.model_s, num_classes=info['num_classes'])
    teacher = models.build_model(opt.model_t, num_classes=info['num_classes'])
    method = build_distiller(opt.distill, opt, feature_shapes(student), feature_shapes(teacher), info['n_data'])
    step = StudentWithLoss(student, method).to(device)
    teacher.to(device).eval()
    if opt.channels_last:
        step.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    if opt.compile:
        compile_modules(device, step)
        compile_teacher(device, teacher)
    params = list(student.parameters()) + list(method.trainable.parameters())
    optimizer = make_optimizer(params, opt, device)
    return step, teacher, optimizer


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_loading(loader, device, steps):
    loader_set_epoch(loader, 1)
    it = iter(loader)
    next(it)
    sync(device)
    start, n = time.perf_counter(), 0
    for _ in range(steps):
        batch = to_device(next(it), device)
        n += batch['input'].shape[0]
    sync(device)
    return n / (time.perf_counter() - start)


class Setup:
    """One side of a pair (published-equivalent or fast), built once so that timed rounds of the
    two sides can alternate: load from other processes then hits both alike."""

    def __init__(self, opt, device, loader, info, amp_dtype, published, teacher_batch=1):
        self.step, self.teacher, self.optimizer = build(opt, device, info)
        self.autocast = make_autocast(device, amp_dtype)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.opt, self.device, self.loader, self.published = opt, device, loader, published
        self.teacher_batch, self.queue = teacher_batch, []
        self.step.train()
        loader_set_epoch(loader, 1)
        self.batches = iter(loader)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def next_with_teacher(self):
        """The next batch and, with --teacher_batch K on the fast side, its share of one teacher
        forward over K batches (None: the step runs the teacher itself)."""
        if self.teacher_batch <= 1:
            return to_device(self.next_batch(), self.device, self.opt.channels_last), None
        if not self.queue:
            batches = [to_device(self.next_batch(), self.device, self.opt.channels_last)
                       for _ in range(self.teacher_batch)]
            outs = batched_teacher_forward(self.teacher, [b['input'] for b in batches], self.step.teacher_preact,
                                           self.autocast, self.opt.channels_last)
            self.queue = list(zip(batches, outs))
        return self.queue.pop(0)

    def train_step(self):
        batch, teacher_out = self.next_with_teacher()
        if teacher_out is None:
            teacher_out = teacher_forward(self.teacher, batch['input'], self.step.teacher_preact, self.autocast)
        logit, terms = forward_backward(self.step, batch, teacher_out, 1, self.autocast, self.optimizer,
                                        self.scaler)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.published:  # the published AverageMeter reads loss and top-1/top-5 every step
            terms[0].item()
            (logit.argmax(1) == batch['target']).float().mean().item()
            logit.topk(5, 1).indices.sum().item()
        return batch['input'].shape[0]

    def images_per_second(self, steps):
        sync(self.device)
        start = time.perf_counter()
        n = sum(self.train_step() for _ in range(steps))
        sync(self.device)
        return n / (time.perf_counter() - start)


def measure_pair(pair, root, args, device, steps, warmup):
    teacher, student, method = pair
    row = {'pair': f'{teacher}->{student} {method.upper()}'}
    setups = {}
    for label, fast in (('published', False), ('fast', True)):
        torch.manual_seed(0)
        opt = options(teacher, student, method, root, args.device, fast, args.batch_size)
        opt, amp_dtype = resolve_speed_flags(opt, device)  # what --fast turns on for this device
        train_loader, _, info = get_loaders(opt, device, METHODS[opt.distill].needs_contrast)
        row[f'{label}_load_img_s'] = time_loading(train_loader, device, steps)
        setups[label] = Setup(opt, device, train_loader, info, amp_dtype, published=not fast,
                              teacher_batch=args.teacher_batch if fast else 1)
        setups[label].images_per_second(warmup)  # compilation happens here
    rates = {label: [] for label in setups}
    for _ in range(args.rounds):
        for label, setup in setups.items():
            rates[label].append(setup.images_per_second(steps))
    for label in setups:
        row[f'{label}_train_img_s'] = float(np.median(rates[label]))
        row[f'{label}_rounds_img_s'] = [round(r, 1) for r in rates[label]]
    row['speedup'] = row['fast_train_img_s'] / row['published_train_img_s']
    row['teacher_batch'] = args.teacher_batch
    print(f"{row['pair']:<28} published {row['published_train_img_s']:9.0f} img/s | fast "
          f"{row['fast_train_img_s']:9.0f} img/s | x{row['speedup']:.2f} | loading alone: "
          f"{row['published_load_img_s']:.0f} vs {row['fast_load_img_s']:.0f} img/s", flush=True)
    return row


def pair_in_subprocess(pair, args, steps, warmup, n_images):
    """Each pair in a fresh process: no compiled graphs, CUDA-graph pools or allocator state carry
    over from the pair before, and a crash costs only that pair."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'row.json')
        cmd = [sys.executable, os.path.abspath(__file__), '--device', args.device, '--steps', str(steps),
               '--warmup', str(warmup), '--rounds', str(args.rounds), '--batch_size', str(args.batch_size),
               '--n_images', str(n_images), '--pairs', ':'.join(pair), '--json', out, '--one_pair',
               '--teacher_batch', str(args.teacher_batch)]
        code = subprocess.run(cmd).returncode
        if code != 0:
            print(f"{'->'.join(pair[:2])} {pair[2].upper()}: failed (exit code {code})", flush=True)
            return None
        with open(out) as f:
            return json.load(f)['rows'][0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='auto', choices=['auto', 'cuda', 'mps', 'cpu'])
    p.add_argument('--steps', type=int, default=None, help='timed steps per round (default 100 on CUDA, 15 on CPU)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (compile happens here)')
    p.add_argument('--rounds', type=int, default=3,
                   help='timed rounds, published and fast alternating; the median is reported')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--n_images', type=int, default=None, help='generated train set size (default 50000 CUDA, 20000 CPU)')
    p.add_argument('--pairs', default=None, help='e.g. resnet56:resnet20:kd,resnet110:resnet20:crd')
    p.add_argument('--json', default=None, help='also write the results here')
    p.add_argument('--teacher_batch', type=int, default=1,
                   help='fast side: one teacher forward per K batches (as --teacher_batch K in training)')
    p.add_argument('--one_pair', action='store_true', help=argparse.SUPPRESS)  # a child of pair_in_subprocess
    args = p.parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == 'cuda'
    steps = args.steps or (100 if cuda else 15)
    warmup = args.warmup if args.warmup is not None else (30 if cuda else 3)
    n_images = args.n_images or (50000 if cuda else 20000)
    pairs = [tuple(x.split(':')) for x in args.pairs.split(',')] if args.pairs else PAIRS
    name = torch.cuda.get_device_name(device) if cuda else f'CPU ({os.cpu_count()} cores)'
    if args.one_pair:
        with tempfile.TemporaryDirectory() as root:
            make_cifar100(root, n_images)
            rows = [measure_pair(pairs[0], root, args, device, steps, warmup)]
    else:
        print(f'device: {name}; torch {torch.__version__}; batch {args.batch_size}; {args.rounds} rounds of '
              f'{steps} timed steps after {warmup} warm-up; {n_images} generated images; '
              f'teacher batch {args.teacher_batch}', flush=True)
        rows = [pair_in_subprocess(pair, args, steps, warmup, n_images) for pair in pairs]
        failed = rows.count(None)
        rows = [r for r in rows if r is not None]
        print('\n| pair | published img/s | fast img/s | speed-up | loading alone, published / fast img/s |')
        print('|---|---:|---:|---:|---:|')
        for r in rows:
            print(f"| {r['pair']} | {r['published_train_img_s']:.0f} | {r['fast_train_img_s']:.0f} | "
                  f"{r['speedup']:.2f}x | {r['published_load_img_s']:.0f} / {r['fast_load_img_s']:.0f} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'device': name, 'torch': torch.__version__, 'batch_size': args.batch_size,
                       'steps': steps, 'rounds': args.rounds, 'rows': rows}, f, indent=2)
    return 1 if not args.one_pair and failed else 0


if __name__ == '__main__':
    sys.exit(main())
