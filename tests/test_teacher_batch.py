"""--teacher_batch: one teacher forward over K batches gives every step the outputs the per-step
teacher gives, to rounding; the stream keeps the order, the resume skip and the last short chunk."""
import contextlib
import csv
import os
import types

import pytest
import torch

import models
from helper.engine.loops import teacher_forward
from helper.engine.run import run
from helper.engine.context import RunContext
from helper.engine.teacher_batch import SharedTeacher, batched_teacher_forward, teacher_stream
from helpers_data import parse_student, student_args


def trained_like_teacher(name='resnet8'):
    torch.manual_seed(0)
    teacher = models.build_model(name, num_classes=10)
    with torch.no_grad():  # running statistics away from 0/1, so eval-mode batch norm matters
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return teacher.eval()


@pytest.mark.parametrize('preact', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
def test_batched_teacher_equals_per_step(preact, channels_last):
    teacher = trained_like_teacher()
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(n, 3, 32, 32, generator=g) for n in (8, 8, 5)]
    if channels_last:
        inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    batched = batched_teacher_forward(teacher, inputs, preact, contextlib.nullcontext, channels_last)
    assert len(batched) == 3
    for x, (feats, logit) in zip(inputs, batched):
        ref_feats, ref_logit = teacher_forward(teacher, x, preact, contextlib.nullcontext)
        assert logit.shape == ref_logit.shape
        torch.testing.assert_close(logit, ref_logit, rtol=1e-4, atol=1e-5)
        assert len(feats) == len(ref_feats)
        for f, r in zip(feats, ref_feats):
            assert f.shape == r.shape
            torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-5)
    # the test can fail: a teacher left in train mode mixes the batches through batch norm
    teacher.train()
    train_mode = batched_teacher_forward(teacher, inputs, preact, contextlib.nullcontext, channels_last)
    teacher.eval()
    ref = teacher_forward(teacher, inputs[0], preact, contextlib.nullcontext)[1]
    assert not torch.allclose(train_mode[0][1], ref, atol=1e-3)


def fake_ctx(teacher, k, n_batches=7, shared=None):
    g = torch.Generator().manual_seed(2)
    loader = [{'input': torch.randn(4, 3, 32, 32, generator=g), 'target': torch.arange(4)}
              for _ in range(n_batches)]

    class Opt:
        teacher_batch = k
    return types.SimpleNamespace(opt=Opt, teacher=teacher, train_loader=loader, device=torch.device('cpu'),
                                 channels_last=False, autocast=contextlib.nullcontext,
                                 context=RunContext(shared_teacher=shared))


@pytest.mark.parametrize('k,skip', [(1, 0), (3, 0), (3, 2), (8, 0), (2, 5)])
def test_stream_order_skip_and_outputs(k, skip):
    teacher = trained_like_teacher()
    ctx = fake_ctx(teacher, k)
    got = list(teacher_stream(ctx, 1, skip, False))
    assert [it for it, _, _ in got] == list(range(skip, 7))
    for it, batch, (feats, logit) in got:
        assert torch.equal(batch['input'], ctx.train_loader[it]['input'])
        ref_feats, ref_logit = teacher_forward(teacher, batch['input'], False, contextlib.nullcontext)
        torch.testing.assert_close(logit, ref_logit, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(feats[-1], ref_feats[-1], rtol=1e-4, atol=1e-5)


def test_stream_without_teacher_yields_no_outputs():
    got = list(teacher_stream(fake_ctx(None, 3), 1, 0, False))
    assert len(got) == 7 and all(out is None for _, _, out in got)


def test_shared_teacher_computes_once_per_position():
    teacher = trained_like_teacher()
    shared = SharedTeacher()
    streams = [teacher_stream(fake_ctx(teacher, 2, shared=shared), 1, 0, False) for _ in range(3)]
    outs = [[], [], []]
    for _ in range(7):  # the co-trained runs take turns, one step each
        for i, s in enumerate(streams):
            outs[i].append(next(s))
    assert shared.computed == 4  # ceil(7 / 2) forwards serve all three runs
    assert shared.served == 12
    for a, b in zip(outs[0], outs[2]):
        assert torch.equal(a[2][1], b[2][1])


@pytest.mark.slow
def test_training_with_teacher_batch_matches_per_step(data, teacher, tmp_path):
    path_t = teacher
    logs = {}
    for k in (1, 3):
        argv = student_args(data, str(tmp_path / f'k{k}'), path_t, 'kd', 'resnet8', '--teacher_batch', str(k),
                            '--epochs', '2')
        summary = run(parse_student(argv), 'student')
        with open(os.path.join(summary['run_dir'], 'log.csv')) as f:
            logs[k] = list(csv.DictReader(f))
        assert summary['options']['teacher_batch'] == k
    for a, b in zip(logs[1], logs[3]):
        for col in ('train_loss', 'loss_kd', 'test_loss', 'test_acc'):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-3, abs=1e-3), col


def test_teacher_batch_must_be_positive(data, teacher, tmp_path):
    from helper.errors import UsageError
    argv = student_args(data, str(tmp_path), teacher, 'kd',
                        'resnet8', '--teacher_batch', '0')
    with pytest.raises(UsageError, match='--teacher_batch'):
        run(parse_student(argv), 'student')


@pytest.mark.slow
def test_bench_fast_side_with_teacher_batch(tmp_path, monkeypatch):
    import json
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
    import bench
    steps = {True: 0, False: 0}  # training steps by side (published?)
    teacher_calls = []  # ('alone', 1) per step-owned teacher forward, ('batched', K) per batched one
    train_step, single, batched = bench.Setup.train_step, bench.teacher_forward, bench.batched_teacher_forward

    def counting_step(self):
        steps[self.published] += 1
        return train_step(self)
    monkeypatch.setattr(bench.Setup, 'train_step', counting_step)
    monkeypatch.setattr(bench, 'teacher_forward', lambda *a: teacher_calls.append(('alone', 1)) or single(*a))
    monkeypatch.setattr(bench, 'batched_teacher_forward',
                        lambda t, inputs, *a: teacher_calls.append(('batched', len(inputs))) or batched(t, inputs, *a))
    out = tmp_path / 'row.json'
    assert bench.main(['--device', 'cpu', '--steps', '2', '--warmup', '1', '--rounds', '1', '--n_images', '300',
                       '--pairs', 'resnet8:resnet8:kd', '--one_pair', '--teacher_batch', '3',
                       '--json', str(out)]) == 0
    saved = json.loads(out.read_text())
    assert (saved['steps'], saved['rounds'], len(saved['rows'])) == (2, 1, 1)
    row = saved['rows'][0]
    assert row['teacher_batch'] == 3 and row['fast_train_img_s'] > 0
    # both sides measured: 1 warm-up + 2 timed steps each, one timed round each
    assert steps == {True: 3, False: 3}
    for side in ('published', 'fast'):
        assert row[f'{side}_train_img_s'] > 0 and row[f'{side}_load_img_s'] > 0
        assert len(row[f'{side}_rounds_img_s']) == 1
    # the published side runs the teacher in each step; the fast side once for 3 batches
    assert sorted(teacher_calls) == [('alone', 1)] * 3 + [('batched', 3)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_teacher_outputs_are_fp32_autograd_targets(dtype):
    """Inference tensors cannot be saved for backward: every output is a normal fp32 tensor with the
    teacher's values, with or without bf16 autocast."""
    teacher = trained_like_teacher()
    x = torch.randn(4, 3, 32, 32)
    autocast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if dtype == torch.bfloat16 \
        else contextlib.nullcontext
    feats, logit = teacher_forward(teacher, x, False, autocast)
    with torch.inference_mode(), autocast():
        want_feats, want_logit = teacher(x, is_feat=True)
    for got, want in zip(feats + [logit], want_feats + [want_logit]):
        assert not got.is_inference() and got.dtype == torch.float32
        torch.testing.assert_close(got, want.float(), rtol=0, atol=0)
        w = torch.ones_like(got, requires_grad=True)
        (w * got).sum().backward()  # got saved for backward
        torch.testing.assert_close(w.grad, got)
