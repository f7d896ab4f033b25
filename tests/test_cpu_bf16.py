"""--fast on the CPU turns bf16 autocast on exactly where the CPU runs bf16 natively."""
import types

import pytest
import torch

from helper.engine import cpu_bf16, experiment
from helper.engine.loops import StudentWithLoss
from helper.engine.options import finalize, student_parser


def fast_opt(fast=True):
    argv = ['--model_t', 'resnet8', '--path_t', 'unused.pth', '--model_s', 'resnet8', '--distill', 'kd',
            '--device', 'cpu'] + (['--fast'] if fast else [])
    return finalize(student_parser().parse_args(argv), 'student')


@pytest.mark.parametrize('amx,avx512_bf16,native', [(True, False, True), (False, True, True),
                                                    (True, True, True), (False, False, False)])
def test_capability_probe(monkeypatch, amx, avx512_bf16, native):
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: True)
    assert cpu_bf16.cpu_bf16_native() is native


def test_probe_without_onednn_is_off(monkeypatch):
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: False)
    assert cpu_bf16.cpu_bf16_native() is False


def test_probe_on_a_torch_without_the_probes(monkeypatch):
    monkeypatch.setattr(torch, 'cpu', types.SimpleNamespace())
    assert cpu_bf16.cpu_bf16_native() is False


@pytest.mark.parametrize('native', [True, False])
def test_fast_picks_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(experiment, 'cpu_bf16_native', lambda: native)
    opt = fast_opt()
    opt, dtype = experiment.resolve_speed_flags(opt, torch.device('cpu'))
    assert dtype == (torch.bfloat16 if native else None)
    assert opt.amp is native
    assert opt.compile and opt.channels_last and opt.data_on_device


def test_without_fast_the_cpu_stays_fp32(monkeypatch):
    monkeypatch.setattr(experiment, 'cpu_bf16_native', lambda: True)
    opt = fast_opt(fast=False)
    opt, dtype = experiment.resolve_speed_flags(opt, torch.device('cpu'))
    assert dtype is None
    assert not opt.amp


def test_losses_stay_fp32_under_cpu_bf16():
    import models
    from distiller_zoo import build_distiller
    from distiller_zoo.base import feature_shapes
    opt = fast_opt()
    torch.manual_seed(0)
    student, teacher = models.build_model('resnet8', num_classes=10), models.build_model('resnet8', num_classes=10)
    method = build_distiller('kd', opt, feature_shapes(student), feature_shapes(teacher), 100)
    step = StudentWithLoss(student, method)
    x = torch.randn(4, 3, 32, 32)
    batch = {'input': x, 'target': torch.arange(4), 'index': torch.arange(4)}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        t_feats, t_logit = teacher(x, is_feat=True)
        logit, terms = step(batch, [f.float() for f in t_feats], t_logit.float())
    assert logit.dtype == torch.bfloat16  # the convolutions ran in bf16
    assert terms.dtype == torch.float32
