"""Multi-process training on the CPU with gloo.

Two processes, each fed half of a fixed 64-sample batch, must take the same steps as one process
fed the whole batch (BatchNorm in eval mode, so batch statistics do not depend on the split);
CRD's memory bank must stay identical on both ranks; the test accuracy and the train shards must
cover the whole set; and a real torchrun run must write its files once, stop on SIGTERM with a
checkpoint and resume to the end.
"""
import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

import models
from dataset import get_loaders, loader_set_epoch
from distiller_zoo import METHODS, build_distiller, feature_shapes, published_option_values
from helper import dist
from helper.errors import UsageError
from helper.engine.loops import StudentWithLoss, teacher_forward, validate
from helper.engine.options import teacher_parser
from helper.engine.run import run
from helper.engine.context import RunContext
from helper.engine.trainer import InitStage, init_epoch

pytestmark = pytest.mark.slow  # trains epochs or starts processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD, BATCH, N_DATA, NCE_K, SIZE = 2, 64, 200, 32, 16  # small images: the models pool adaptively
# Methods whose loss is a mean of per-sample terms: one process on the whole batch and two on the
# halves must agree. The others (rkd, similarity, correlation, pkt, kdsvd) relate the samples of
# a batch to each other, which under DDP means the samples of one rank's batch; so does DIST's
# intra-class relation (each class's probabilities correlated over the rank's batch).
PER_SAMPLE = ('kd', 'crd', 'abound', 'fsp', 'hint', 'attention', 'nst', 'vid', 'factor', 'dkd', 'dkd+ls')
INIT_STAGE = ('abound', 'factor', 'fsp')


def method_opt(distill):
    """'NAME+ls': the method with --logit_stand (standardizes per sample, in its loss and the KD term)."""
    distill, _, ls = distill.partition('+')
    cls = METHODS[distill]
    return argparse.Namespace(**dict(published_option_values(),   # a new method's options too
                                     kd_T=4.0, hint_layer=2, feat_dim=16, nce_k=NCE_K, nce_t=0.07, nce_m=0.5,
                              mode='exact', model_s='resnet8', learning_rate=0.05, gamma=cls.gamma,
                              alpha=max(cls.alpha, 0.5), beta=cls.beta, mc_weight=0.0, distill=distill,
                              init_epochs=1, momentum=0.9, weight_decay=5e-4, dkd_alpha=1.0, dkd_beta=8.0,
                              dkd_T=4.0, dkd_warmup=20.0, dist_beta=1.0, dist_gamma=1.0, dist_tau=4.0,
                              logit_stand=ls == 'ls'))


def fixed_batch():
    g = torch.Generator().manual_seed(1)
    index = torch.randperm(N_DATA, generator=g)[:BATCH]
    contrast_idx = torch.randint(0, N_DATA, (BATCH, NCE_K + 1), generator=g)
    contrast_idx[:, 0] = index
    return {'input': torch.randn(BATCH, 3, SIZE, SIZE, generator=g),
            'target': torch.randint(0, 10, (BATCH,), generator=g), 'index': index,
            'contrast_idx': contrast_idx}


def rank_part(batch, rank):
    size = BATCH // WORLD
    return {k: v[rank * size:(rank + 1) * size] for k, v in batch.items()}


def build(distill, dtype=torch.float32):
    torch.manual_seed(0)
    student = models.build_model('resnet8', num_classes=10)
    teacher = models.build_model('resnet14', num_classes=10).eval()
    opt = method_opt(distill)
    preact = METHODS[opt.distill].preact
    method = build_distiller(opt.distill, opt, feature_shapes(student, preact, SIZE),
                             feature_shapes(teacher, preact, SIZE), N_DATA)
    return student.to(dtype), teacher.to(dtype), method.to(dtype)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def two_steps(distill, batch, bn_eval=True, dtype=torch.float32):
    """Two SGD steps through dist.wrap (DDP when a process group exists, as in helper/engine/trainer.py).
    bn_eval: BatchNorm in eval mode, so batch statistics do not depend on how the batch is split.
    dtype float64: the large published weights (hint 100, attention 1000) grow the weights to ~100
    in two steps, which in float32 turns the summation order of one CPU into differences of 1e-4."""
    student, teacher, method = build(distill, dtype)
    batch = dict(batch, input=batch['input'].to(dtype))
    module = dist.wrap(StudentWithLoss(student, method), torch.device('cpu'))
    params = list(student.parameters()) + list(method.trainable.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    module.train()
    for m in module.modules():
        if bn_eval and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    t_feats, t_logit = teacher_forward(teacher, batch['input'], method.preact, contextlib.nullcontext)
    losses = []
    for _ in range(2):
        _, terms = module(batch, t_feats, t_logit)
        optimizer.zero_grad(set_to_none=True)
        terms[0].backward()
        optimizer.step()
        losses.append(terms[0].detach())
    return {'losses': torch.stack(losses), 'student': snapshot(student), 'method': snapshot(method),
            'ignored': sorted(getattr(module, 'parameters_to_ignore', ()))}


def two_dot_steps(batch):
    """Two KD steps with --optimizer dot as helper/engine/trainer.py takes them: on the module inside the
    DDP wrapper, the gradients of each backward pass averaged over ranks by dot_forward_backward."""
    from helper.engine.dot import DOT, dot_forward_backward
    student, teacher, method = build('kd', torch.float64)
    batch = dict(batch, input=batch['input'].double())
    wrapped = dist.wrap(StudentWithLoss(student, method), torch.device('cpu'))
    module = getattr(wrapped, 'module', wrapped)
    params = list(student.parameters()) + list(method.trainable.parameters())
    optimizer = DOT(params, lr=0.1, momentum=0.9, delta=0.075, weight_decay=5e-4)
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    teacher_out = teacher_forward(teacher, batch['input'], False, contextlib.nullcontext)
    losses = [dot_forward_backward(module, batch, teacher_out, 1, contextlib.nullcontext, optimizer)[1][0].detach()
              for _ in range(2)]
    return {'losses': torch.stack(losses), 'student': snapshot(student),
            'kd_buffers': [optimizer.state[p]['momentum_kd_buffer'].clone() for p in student.parameters()]}


class _Quiet:
    def update(self, *args, **kw):
        pass

    def close(self):
        pass


def init_stage(distill, batch):
    """One init epoch of one batch per rank, through the trainer's loop with the real InitStage."""
    student, teacher, method = build(distill)
    opt = argparse.Namespace(**vars(method_opt(distill)), print_freq=1, seed=0)
    ctx = argparse.Namespace(opt=opt, teacher=teacher, device=torch.device('cpu'), channels_last=False,
                             autocast=contextlib.nullcontext, train_loader=[batch],
                             progress=lambda total, desc: _Quiet(), context=RunContext())
    done, state = init_epoch(ctx, InitStage(ctx, method, student), 1)
    assert done and state.step == 1
    # Parameters only: the init stage trains BatchNorm on each rank's own batch (its running
    # statistics are re-sent from rank 0 by DDP once the main stage starts).
    return {name: {k: v.detach().clone() for k, v in m.named_parameters()}
            for name, m in (('student', student), ('method', method))}


def digits_opt(on_device):
    return argparse.Namespace(dataset='digits', data_folder='./data', batch_size=64, num_workers=0,
                              distill='kd', nce_k=NCE_K, mode='exact', data_on_device=on_device, seed=3, compile=False,
                              imagenet_transform='standard', tiny_imagenet_transform='emkd')


def metrics_and_orders():
    """Test metrics of a fixed model, and the train order of epochs 1, 2 and 1 again, per loader kind."""
    torch.manual_seed(0)
    model = models.build_model('resnet8', num_classes=10)
    out = {}
    for on_device in (False, True):
        train_loader, test_loader, _ = get_loaders(digits_opt(on_device), torch.device('cpu'))
        orders = []
        for epoch in (1, 2, 1):
            loader_set_epoch(train_loader, epoch)
            if on_device:
                orders.append(torch.cat([b['index'] for b in train_loader]))
            else:  # the sampler is what DDP changes; the images need not be decoded
                orders.append(torch.tensor(list(train_loader.sampler)))
        out[on_device] = {'test': validate(model, test_loader, torch.device('cpu'), contextlib.nullcontext),
                          'orders': orders}
    return out


def teacher_runs(save_root):
    """helper.engine.run.run inside the process group: --sync_bn refused on the CPU, then a real 1-epoch
    run without --seed (each rank draws its own seed before the ranks meet)."""
    argv = ['--model', 'resnet8', '--dataset', 'digits', '--epochs', '1', '--batch_size', '128',
            '--num_workers', '0', '--save_root', save_root]
    try:
        run(teacher_parser().parse_args(argv + ['--sync_bn']), 'teacher')
        refused = None
    except UsageError as e:
        refused = str(e)
    summary = run(teacher_parser().parse_args(argv), 'teacher')
    return {'sync_bn': refused, 'seed': summary['options']['seed'], 'acc': summary['best_acc'],
            'save_root': save_root}


def _worker(rank, store, out_dir):
    torch.set_num_threads(1)
    tdist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=WORLD)
    try:
        part = rank_part(fixed_batch(), rank)
        result = {'steps': {d: two_steps(d, part, dtype=torch.float64) for d in PER_SAMPLE},
                  'train_bn': {d: two_steps(d, part, bn_eval=False) for d in METHODS},
                  'init': {d: init_stage(d, part) for d in INIT_STAGE},
                  'dot': two_dot_steps(part),
                  'data': metrics_and_orders(),
                  'teacher': teacher_runs(os.path.join(out_dir, 'save'))}
        torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        tdist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    mp.start_processes(_worker, args=(str(out / 'store'), str(out)), nprocs=WORLD, start_method='spawn')
    return [torch.load(out / f'rank{r}.pt', weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope='module')
def single():
    assert not dist.active()
    batch = fixed_batch()
    return {d: two_steps(d, batch, dtype=torch.float64) for d in PER_SAMPLE}


def without_bn_statistics(state):
    # DDP sends rank 0's running statistics before each forward; each rank then adds its own batch.
    return {k: v for k, v in state.items() if 'running_' not in k and 'num_batches_tracked' not in k}


def assert_same(a, b, **tol):
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], msg=key, **tol)
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize('distill', sorted(METHODS))
def test_ranks_stay_identical(ranks, distill):
    """Every method runs two DDP steps (BatchNorm training) without a hang or an unused-parameter
    error, and both ranks hold the same weights (and the same CRD memory bank) afterwards."""
    a, b = (r['train_bn'][distill] for r in ranks)
    for part in ('student', 'method'):
        assert_same(*(without_bn_statistics(x[part]) for x in (a, b)), rtol=0, atol=0)
    start, _, _ = build(distill)
    assert not torch.equal(a['student']['fc.weight'], start.state_dict()['fc.weight'])


@pytest.mark.parametrize('distill', PER_SAMPLE)
def test_two_ranks_match_one_process(ranks, single, distill):
    """2 ranks x 32 samples take the same two steps as 1 process x 64: same loss (the mean of the
    ranks' losses), same student and method weights."""
    one = single[distill]
    mean_loss = (ranks[0]['steps'][distill]['losses'] + ranks[1]['steps'][distill]['losses']) / WORLD
    torch.testing.assert_close(mean_loss, one['losses'], rtol=1e-5, atol=1e-6)
    assert_same(ranks[0]['steps'][distill]['student'], one['student'], rtol=1e-4, atol=1e-6)
    assert_same(ranks[0]['steps'][distill]['method'], one['method'], rtol=1e-4, atol=1e-6)


def test_dot_two_ranks_match_one_process(ranks):
    """DOT's two backward passes per step, each averaged over the ranks: 2 x 32 samples take the
    same steps, with the same distillation momenta, as 1 process x 64."""
    one = two_dot_steps(fixed_batch())
    mean_loss = (ranks[0]['dot']['losses'] + ranks[1]['dot']['losses']) / WORLD
    torch.testing.assert_close(mean_loss, one['losses'], rtol=1e-5, atol=1e-6)
    for r in ranks:
        assert_same(r['dot']['student'], one['student'], rtol=1e-4, atol=1e-6)
        for a, b in zip(r['dot']['kd_buffers'], one['kd_buffers']):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_crd_memory_bank_matches_one_process(ranks, single):
    """Both ranks' memory holds every row of the global batch, updated as one process would, and
    the normalisation constants Z come from the global batch."""
    one = single['crd']['method']
    for r in ranks:
        bank = r['steps']['crd']['method']
        for key in ('criterion.contrast.memory_v1', 'criterion.contrast.memory_v2'):
            torch.testing.assert_close(bank[key], one[key], rtol=1e-5, atol=1e-6)
        for key in ('criterion.contrast.z_v1', 'criterion.contrast.z_v2'):
            assert one[key] > 0
            torch.testing.assert_close(bank[key], one[key], rtol=1e-6, atol=0)
    start = build('crd', torch.float64)[2].state_dict()['criterion.contrast.memory_v1']
    rows = fixed_batch()['index']
    assert not torch.allclose(one['criterion.contrast.memory_v1'][rows], start[rows])


def test_crd_memory_bank_is_not_broadcast(ranks):
    """The bank is kept equal by the gather; DDP must not also send it from rank 0 every step."""
    ignored = ranks[0]['steps']['crd']['ignored']
    assert 'method.criterion.contrast.memory_v1' in ignored
    assert 'method.criterion.contrast.memory_v2' in ignored
    assert not any('student' in name for name in ignored)


@pytest.mark.parametrize('distill', INIT_STAGE)
def test_init_stage_agrees_across_ranks(ranks, distill):
    a, b = (r['init'][distill] for r in ranks)
    assert_same(a['student'], b['student'], rtol=0, atol=0)
    assert_same(a['method'], b['method'], rtol=0, atol=0)
    start = dict(zip(('student', 'method'), build(distill)[::2]))
    moved = [not torch.equal(a[part][k], v) for part in a for k, v in start[part].named_parameters()]
    assert any(moved)


def test_run_in_process_group(ranks):
    """Both ranks train with one seed and report one accuracy; only rank 0 wrote; --sync_bn on the
    CPU is a one-line usage error on every rank."""
    a, b = (r['teacher'] for r in ranks)
    assert a['seed'] == b['seed'] and a['acc'] == b['acc']
    assert a['sync_bn'] == b['sync_bn'] and '--sync_bn needs CUDA' in a['sync_bn']
    files = [os.path.relpath(os.path.join(d, f), a['save_root']) for d, _, fs in os.walk(a['save_root']) for f in fs]
    assert len([f for f in files if '/tb/' in f]) == 1
    assert len([f for f in files if f.endswith('summary.json')]) == 1
    with open(os.path.join(a['save_root'], 'result.txt')) as f:
        assert len(f.read().splitlines()) == 1


@pytest.mark.parametrize('on_device', [False, True], ids=['dataloader', 'on_device'])
def test_test_metrics_cover_the_whole_test_set(ranks, on_device):
    """Sharded evaluation, all-reduced: both ranks report what one process reports."""
    one = metrics_and_orders()[on_device]['test']
    for r in ranks:
        got = r['data'][on_device]['test']
        assert got['acc'] == pytest.approx(one['acc'], abs=1e-9)
        assert got['acc_top5'] == pytest.approx(one['acc_top5'], abs=1e-9)
        assert got['loss'] == pytest.approx(one['loss'], rel=1e-5)


@pytest.mark.parametrize('on_device', [False, True], ids=['dataloader', 'on_device'])
def test_train_shards_partition_and_reshuffle(ranks, on_device):
    (a1, a2, a1_again), (b1, b2, _) = (r['data'][on_device]['orders'] for r in ranks)
    n = len(a1) + len(b1)
    assert len(a1) == len(b1)
    assert sorted(torch.cat([a1, b1]).tolist()) == list(range(n))  # disjoint, nothing left out
    assert sorted(torch.cat([a2, b2]).tolist()) == list(range(n))
    assert not torch.equal(a1, a2)  # set_epoch reshuffles
    assert torch.equal(a1, a1_again)  # and replays an epoch (resume)


# ---------------------------------------------------------------- a real torchrun run

def _torchrun(args, log_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(WORLD),
           'train_student.py'] + args
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, 'w'), stderr=subprocess.STDOUT)


def _wait_for(path, text, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path) as f:
            if text in f.read():
                return
        assert proc.poll() is None, open(path).read()[-3000:]
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f'{text!r} did not appear in {timeout}s:\n' + open(path).read()[-3000:])


def _log_rows(run_dir):
    with open(os.path.join(run_dir, 'log.csv')) as f:
        return list(csv.DictReader(f))


def test_torchrun_sigterm_then_resume(tmp_path):
    """torchrun forwards SIGTERM; the ranks stop together with a resumable checkpoint, --resume
    finishes the run; only rank 0 printed and wrote, and checkpoints carry no `module.` prefix."""
    teacher_dir = tmp_path / 'resnet8_vanilla'
    teacher_dir.mkdir()
    torch.manual_seed(0)
    torch.save({'model': models.build_model('resnet8', num_classes=10).state_dict()},
               teacher_dir / 'ckpt_epoch_1.pth')
    save_root = tmp_path / 'save'
    args = ['--path_t', str(teacher_dir / 'ckpt_epoch_1.pth'), '--model_s', 'resnet8', '--distill', 'crd',
            '--dataset', 'digits', '--epochs', '3', '--batch_size', '64', '--num_workers', '0',
            '--print_freq', '3', '--nce_k', '64', '--feat_dim', '16', '--save_root', str(save_root)]

    first_log = tmp_path / 'first.txt'
    proc = _torchrun(args, first_log)
    _wait_for(first_log, '[epoch 2/3] 3/', proc, timeout=120)  # inside epoch 2 (11 steps)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    first = first_log.read_text()
    assert first.count('epoch 1/3:') == 1 and first.count('run folder:') == 1  # rank 0 alone prints
    assert 'stopped by signal' in first, first[-3000:]

    (run_dir,) = (save_root / 'student_model').iterdir()
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['status'] == 'stopped' and summary['epochs_done'] in (1, 2)
    rows_before = _log_rows(run_dir)
    stopped = torch.load(run_dir / 'resnet8_last.pth', weights_only=True)
    assert stopped['epoch'] == summary['epochs_done']
    partial = stopped.get('partial')
    if partial:  # stopped inside epoch 2: its sums so far are over both ranks
        assert partial['epoch'] == 2 and partial['count'] == partial['step'] * 64 * WORLD

    second_log = tmp_path / 'second.txt'
    proc = _torchrun(args + ['--resume'], second_log)
    assert proc.wait(timeout=180) == 0, second_log.read_text()[-3000:]
    second = second_log.read_text()
    assert second.count('epoch 3/3:') == 1 and 'epoch 1/3:' not in second

    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['status'] == 'finished' and summary['epochs_done'] == 3
    rows = _log_rows(run_dir)
    assert [r['epoch'] for r in rows] == ['1', '2', '3']
    assert rows[:len(rows_before)] == rows_before  # the resumed run kept what the first one logged

    # Files written once, by rank 0: one tensorboard file per launch, one result line.
    files = sorted(str(p.relative_to(save_root)) for p in save_root.rglob('*') if p.is_file())
    run = str(run_dir.relative_to(save_root))
    expected = {'result.txt', *(f'{run}/{f}' for f in ('ckpt_epoch_3.pth', 'log.csv', 'resnet8_best.pth',
                                                       'resnet8_last.pth', 'resnet8_last.prev.pth',
                                                       'summary.json'))}
    assert set(f for f in files if '/tb/' not in f) == expected
    assert len([f for f in files if '/tb/' in f]) == 2
    assert len((save_root / 'result.txt').read_text().splitlines()) == 1

    last = torch.load(run_dir / 'resnet8_last.pth', weights_only=True)
    fresh = models.build_model('resnet8', num_classes=10)
    fresh.load_state_dict(last['model'])  # strict: no `module.` prefix
    assert not any(k.startswith('module.') for k in last['method'])
    best, _ = models.read_state_dict(str(run_dir / 'resnet8_best.pth'))
    assert best.keys() == fresh.state_dict().keys()
