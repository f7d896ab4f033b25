"""MobileNetV2, ShuffleV1/V2, DenseNet and ResNeXt against the published contract."""
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.ShuffleNetv1 import ShuffleV1
from models.ShuffleNetv2 import ShuffleV2
from models.densenet import densenet40, densenet100
from models.mobilenetv2 import mobile_half
from models.resnext import (RESNEXT_BASE_DEPTH, myresnext29, myresnext101, resnext29,
                            resnext101)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
CONSTRUCTORS = {
    'MobileNetV2': mobile_half,
    'ShuffleV1': ShuffleV1,
    'ShuffleV2': ShuffleV2,
    'densenet40': densenet40,
    'densenet100': densenet100,
    'resnext29': resnext29,
    'resnext101': resnext101,
}
# forward passes of these are cheap enough for every test; resnext101 differs from
# resnext29 only in block counts, which its state_dict test pins down
FAST = ['MobileNetV2', 'ShuffleV1', 'ShuffleV2', 'densenet40', 'resnext29']


@pytest.fixture(scope='module')
def reference():
    with open(os.path.join(FIXTURES, 'models.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    return {name: fn(num_classes=100).eval() for name, fn in CONSTRUCTORS.items()}


@pytest.fixture(scope='module')
def x32():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def run(model, x, **kwargs):
    with torch.no_grad():
        return model(x, **kwargs)


@pytest.mark.parametrize('name', list(CONSTRUCTORS))
def test_state_dict_and_params_match_published(name, models, reference):
    model, ref = models[name], reference[name]
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert keys == ref['state_dict']
    assert sum(p.numel() for p in model.parameters()) == ref['params']


@pytest.mark.parametrize('name', FAST + ['densenet100'])
def test_feature_and_logit_shapes(name, models, reference):
    model, ref = models[name], reference[name]
    x = torch.randn(2, 3, 32, 32)
    feats, logits = run(model, x, is_feat=True)
    pre_feats, pre_logits = run(model, x, is_feat=True, preact=True)
    assert [list(f.shape) for f in feats] == ref['feat_shapes_for_2x3x32x32']
    assert [list(f.shape) for f in pre_feats] == ref['preact_feat_shapes']
    assert list(logits.shape) == ref['logit_shape']
    assert torch.equal(run(model, x), logits)
    assert torch.equal(pre_logits, logits)


@pytest.fixture(scope='module')
def goldens():
    return torch.load(os.path.join(FIXTURES, 'golden_models.pt'), weights_only=False)


@pytest.mark.parametrize('name', ['MobileNetV2', 'ShuffleV2'])
def test_published_checkpoint_reproduces_outputs(name, goldens):
    golden = goldens[name]
    model = CONSTRUCTORS[name](num_classes=100)
    model.load_state_dict(golden['checkpoint']['model'], strict=True)
    model.eval()
    feats, logits = run(model, golden['input'], is_feat=True)
    pre_feats, _ = run(model, golden['input'], is_feat=True, preact=True)
    torch.testing.assert_close(logits, golden['logit'], atol=1e-5, rtol=1e-5)
    for ours, published in zip(feats, golden['feats'], strict=True):
        torch.testing.assert_close(ours, published, atol=1e-5, rtol=1e-5)
    for ours, published in zip(pre_feats, golden['preact_feats'], strict=True):
        torch.testing.assert_close(ours, published, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('name', ['ShuffleV1', 'resnext29'])
def test_preact_is_stage_output_before_relu(name, models, x32):
    feats, _ = run(models[name], x32, is_feat=True)
    pre_feats, _ = run(models[name], x32, is_feat=True, preact=True)
    torch.testing.assert_close(pre_feats[0], feats[0])
    for pre, post in zip(pre_feats[1:-1], feats[1:-1]):
        assert (pre < 0).any()
        torch.testing.assert_close(F.relu(pre), post)


def test_shufflev2_preact_is_taken_before_the_channel_shuffle(models, x32):
    feats, _ = run(models['ShuffleV2'], x32, is_feat=True)
    pre_feats, _ = run(models['ShuffleV2'], x32, is_feat=True, preact=True)
    for pre, post in zip(pre_feats[1:-1], feats[1:-1]):
        n, c, h, w = pre.shape
        shuffled = F.relu(pre).view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        assert (pre < 0).any()
        torch.testing.assert_close(shuffled, post)


@pytest.mark.parametrize('name', ['MobileNetV2', 'densenet40'])
def test_preact_changes_nothing_without_a_final_relu(name, models, x32):
    feats, _ = run(models[name], x32, is_feat=True)
    pre_feats, _ = run(models[name], x32, is_feat=True, preact=True)
    for pre, post in zip(pre_feats, feats, strict=True):
        assert torch.equal(pre, post)
    assert any((f < 0).any() for f in feats[1:-1])


def test_adaptive_pooling_equals_the_published_fixed_pooling(models, x32):
    # the published code pools the final map with a fixed window sized for 32x32
    feats, _ = run(models['ShuffleV1'], x32, is_feat=True)
    torch.testing.assert_close(feats[-1], F.avg_pool2d(feats[-2], 4).flatten(1))
    feats, _ = run(models['resnext29'], x32, is_feat=True)
    torch.testing.assert_close(feats[-1], F.avg_pool2d(feats[-2], 8, 1).flatten(1))
    dense = models['densenet40']
    feats, _ = run(dense, x32, is_feat=True)
    final = F.relu(dense.bn(feats[-2]))
    torch.testing.assert_close(feats[-1], F.avg_pool2d(final, 8).flatten(1))


@pytest.mark.parametrize('name', FAST)
def test_runs_on_64x64_inputs(name, models):
    x = torch.randn(2, 3, 64, 64)
    feats, logits = run(models[name], x, is_feat=True)
    feats32, _ = run(models[name], torch.randn(2, 3, 32, 32), is_feat=True)
    assert logits.shape == (2, 100)
    assert feats[-1].shape == feats32[-1].shape
    for big, small in zip(feats[:-1], feats32[:-1]):
        assert big.shape[-2:] == (2 * small.shape[-2], 2 * small.shape[-1])


@pytest.mark.parametrize('name', FAST)
def test_feature_helpers(name, models, x32):
    model = models[name]
    feats, _ = run(model, x32, is_feat=True)
    bns = model.get_bn_before_relu()
    assert all(isinstance(bn, nn.BatchNorm2d) for bn in bns)
    # one BN per stage feature, normalising that feature's channels
    channels = [f.shape[1] for f in feats[1:-1]]
    if name == 'ShuffleV2':
        channels = [c // 2 for c in channels]  # only the transformed half has a BN
    assert [bn.num_features for bn in bns] == channels
    model_params = {id(p) for p in model.parameters()}
    feat_params = {id(p) for p in model.get_feat_modules().parameters()}
    assert isinstance(model.get_feat_modules(), nn.ModuleList)
    assert feat_params and feat_params < model_params


@pytest.mark.parametrize('my_fn, fixed_fn', [(myresnext29, resnext29),
                                             (myresnext101, resnext101)])
def test_myresnext_defaults_equal_the_fixed_model(my_fn, fixed_fn, models, reference):
    fixed_name = fixed_fn.__name__
    fixed = models[fixed_name]
    mine = my_fn(num_classes=100).eval()
    assert [[k, list(v.shape)] for k, v in mine.state_dict().items()] == \
        reference[fixed_name]['state_dict']
    if fixed_name == 'resnext29':  # resnext101's forward is too slow for this suite
        mine.load_state_dict(fixed.state_dict(), strict=True)
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(run(mine, x), run(fixed, x))


def test_resnext_base_depth():
    assert RESNEXT_BASE_DEPTH == {'resnext29': [3, 3, 3], 'resnext101': [11, 11, 11]}


@pytest.mark.parametrize('my_fn', [myresnext29, myresnext101])
def test_myresnext_block_counts_per_stage(my_fn, x32):
    model = my_fn(num_classes=10, block_depth=[1, 4, 2]).eval()
    assert [len(model.stage_1), len(model.stage_2), len(model.stage_3)] == [1, 4, 2]
    assert 'stage_2.stage_2_bottleneck_3.conv_conv.weight' in model.state_dict()
    assert 'stage_1.stage_1_bottleneck_1.conv_conv.weight' not in model.state_dict()
    # only the first block of each stage changes width, so only it has a projection shortcut
    shortcuts = [k for k in model.state_dict() if k.endswith('shortcut_conv.weight')]
    assert [k.split('.')[1] for k in shortcuts] == \
        ['stage_1_bottleneck_0', 'stage_2_bottleneck_0', 'stage_3_bottleneck_0']
    feats, logits = run(model, x32, is_feat=True)
    assert [f.shape[1:] for f in feats[:-1]] == \
        [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8)]
    assert logits.shape == (2, 10)


@pytest.mark.parametrize('bad', [[3, 3], [3, 3, 3, 3], [3, 0, 3]])
def test_myresnext_rejects_wrong_block_depth(bad):
    with pytest.raises(ValueError):
        myresnext29(block_depth=bad)
