"""CUDA checks of the fast path, in one process, each bounded in time; results as JSON.

    python scripts/gpu_checks.py --out gpu_checks.json [--only step_graph,cotrain]

- step_graph: 12 steps of resnet110 -> resnet20 CRD with --step_graph's StepGraph (a real CUDA
  graph) against eager steps from the same weights: loss terms and weights agree to rounding.
- cotrain: three myresnet14 candidates (CRD + MC, 2 epochs, generated data) co-trained in one
  process against each trained alone, on CUDA: log.csv values and weights agree to rounding.
- bench_cotrain: scripts/bench_cotrain.py's phase measurement and search arithmetic on CUDA.
- mdistiller_fast (only with --only): KD+DOT, ReviewKD and OFD with MC, one epoch each with --fast.
The whole 240-epoch run is timed by scripts/gpu_checks.sh as a train_student.py command.
"""
import argparse
import copy
import csv
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import models  # noqa: E402
from distiller_zoo import build_distiller  # noqa: E402
from distiller_zoo.base import feature_shapes  # noqa: E402
from helper.engine.loops import StudentWithLoss, forward_backward, teacher_forward  # noqa: E402
from helper.engine.options import finalize, student_parser  # noqa: E402


class _NoScale:
    @staticmethod
    def scale(x):
        return x


def check_step_graph(device='cuda', runner=None):
    from helper.engine.step_graph import CudaGraphRunner, StepGraph
    dev = torch.device(device)
    argv = ['--model_t', 'resnet110', '--path_t', 'unused.pth', '--model_s', 'resnet20', '--distill', 'crd',
            '--device', device]
    opt = finalize(student_parser().parse_args(argv), 'student')
    torch.manual_seed(0)
    student, teacher = models.build_model('resnet20'), models.build_model('resnet110')
    method = build_distiller('crd', opt, feature_shapes(student), feature_shapes(teacher), 50000)
    step = StudentWithLoss(student, method).to(dev)
    step_e = copy.deepcopy(step)
    teacher.to(dev).eval()

    def sgd(m):
        params = list(m.student.parameters()) + list(m.method.trainable.parameters())
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, fused=True)
    o_g, o_e = sgd(step), sgd(step_e)
    graph = StepGraph(step, o_g, torch.bfloat16, False, runner=runner or CudaGraphRunner)
    auto = lambda: torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False)  # noqa: E731
    g = torch.Generator(dev).manual_seed(1)
    worst_terms = 0.0
    for i in range(12):
        b = {'input': torch.randn(64, 3, 32, 32, device=dev, generator=g),
             'target': torch.randint(0, 100, (64,), device=dev, generator=g),
             'index': torch.randint(0, 50000, (64,), device=dev, generator=g),
             'contrast_idx': torch.randint(0, 50000, (64, 16385), device=dev, generator=g)}
        if i == 8:
            for o in (o_g, o_e):
                for group in o.param_groups:
                    group['lr'] = 0.005
        out = teacher_forward(teacher, b['input'], False, auto)
        _, terms = graph.step(b, out)
        _, terms_e = forward_backward(step_e, b, out, 1, auto, o_e, _NoScale)
        o_e.step()
        rel = (terms.detach() - terms_e.detach()).abs() / terms_e.detach().abs().clamp(min=1e-6)
        worst_terms = max(worst_terms, float(rel.max()))
    if dev.type == 'cuda':
        torch.cuda.synchronize()
    worst_w = max(float((a.float() - b.float()).abs().max()) for a, b in
                  zip(step.student.state_dict().values(), step_e.student.state_dict().values()))
    return {'captures': graph.captures, 'replays': graph.replays, 'failed': graph.failed,
            'max_rel_diff_loss_terms': worst_terms, 'max_abs_diff_student_weights': worst_w,
            'ok': not graph.failed and graph.replays == 9 and worst_terms < 5e-2}


def check_cotrain(device='cuda'):
    from helper.launch import cotrain
    from helper.engine.run import run
    from helpers_data import student_args, write_tiny_cifar100
    from helper.engine.options import teacher_parser
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_cifar100(os.path.join(tmp, 'data'), train_per_class=4)
        t_argv = ['--model', 'wrn_40_1', '--data_folder', data, '--save_root', os.path.join(tmp, 't'),
                  '--epochs', '1', '--batch_size', '64', '--num_workers', '0', '--seed', '0', '--device', device]
        path_t = os.path.join(run(teacher_parser().parse_args(t_argv), 'teacher')['run_dir'], 'ckpt_epoch_1.pth')

        def cand(root, comp):
            argv = student_args(data, os.path.join(tmp, root), path_t, 'crd', 'myresnet14', '--block_depth', comp,
                                '--epochs', '2', '--mc', '1', '--batch_size', '64', '--device', device,
                                '--teacher_batch', '2')
            return student_parser().parse_args(argv)
        comps = ['2,2,2', '2,6,1', '1,2,3']
        alone = [run(cand('alone', c), 'student') for c in comps]
        together = cotrain.cotrain([cand('co', c) for c in comps])
        rows = []
        for a, b in zip(alone, together):
            la = list(csv.DictReader(open(os.path.join(a['run_dir'], 'log.csv'))))
            lb = list(csv.DictReader(open(os.path.join(b['run_dir'], 'log.csv'))))
            loss_diff = max(abs(float(x['train_loss']) - float(y['train_loss'])) for x, y in zip(la, lb))
            wa = torch.load(os.path.join(a['run_dir'], 'myresnet14_last.pth'), weights_only=True)['model']
            wb = torch.load(os.path.join(b['run_dir'], 'myresnet14_last.pth'), weights_only=True)['model']
            w_diff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
            rows.append({'block_depth': a['options']['block_depth'], 'max_train_loss_diff': loss_diff,
                         'max_weight_diff': w_diff, 'identical_log': la == lb})
    return {'candidates': rows, 'ok': all(r['max_train_loss_diff'] < 1e-2 for r in rows)}


def check_bench_cotrain():
    sys.path.insert(0, ROOT)
    from scripts import bench_cotrain
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'row.json')
        bench_cotrain.main(['--device', 'cuda', '--steps', '50', '--rounds', '3', '--json', out])
        with open(out) as f:
            return json.load(f)


def check_mdistiller_fast(device='cuda', fast=True):
    """KD+DOT, ReviewKD and OFD (with MC on a my* student), one epoch each with --fast: DOT's two
    backward passes through the compiled step (no CUDA graphs), ReviewKD's ABF modules and OFD's
    connectors under bf16 autocast; every logged value finite."""
    import math
    from helper.engine.run import run
    from helpers_data import student_args, write_tiny_cifar100
    from helper.engine.options import teacher_parser
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_cifar100(os.path.join(tmp, 'data'), train_per_class=4)
        t_argv = ['--model', 'resnet20', '--data_folder', data, '--save_root', os.path.join(tmp, 't'),
                  '--epochs', '1', '--batch_size', '64', '--num_workers', '0', '--seed', '0', '--device', device]
        path_t = os.path.join(run(teacher_parser().parse_args(t_argv), 'teacher')['run_dir'], 'ckpt_epoch_1.pth')
        for distill, extra in (('kd', ['--optimizer', 'dot']), ('reviewkd', []), ('ofd', []),
                               ('reviewkd', ['--optimizer', 'dot'])):
            argv = student_args(data, os.path.join(tmp, 's'), path_t, distill, 'myresnet20', '--block_depth', '2,3,2',
                                '--mc', '1', '--batch_size', '64', '--device', device, *extra,
                                *(['--fast'] if fast else []))
            started = time.time()
            summary = run(student_parser().parse_args(argv), 'student')
            log = list(csv.DictReader(open(os.path.join(summary['run_dir'], 'log.csv'))))
            rows.append({'distill': distill, 'flags': ' '.join(extra), 'status': summary['status'],
                         'finite': all(math.isfinite(float(v)) for v in log[-1].values()),
                         'seconds': round(time.time() - started, 1)})
    return {'runs': rows, 'ok': all(r['status'] == 'finished' and r['finite'] for r in rows)}


CHECKS = {'step_graph': check_step_graph, 'cotrain': check_cotrain, 'bench_cotrain': check_bench_cotrain,
          'mdistiller_fast': check_mdistiller_fast}
DEFAULT_CHECKS = ('step_graph', 'cotrain', 'bench_cotrain')   # mdistiller_fast: asked for by name


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', required=True)
    p.add_argument('--only', default=','.join(DEFAULT_CHECKS))
    args = p.parse_args()
    results = {'device': torch.cuda.get_device_name(0), 'torch': torch.__version__}
    for name in args.only.split(','):
        start = time.time()
        try:
            results[name] = CHECKS[name]()
        except Exception as e:  # one failing check must not hide the others
            results[name] = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
        results[name]['seconds'] = round(time.time() - start, 1)
        print(name, json.dumps(results[name]), flush=True)
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
