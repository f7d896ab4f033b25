"""Model zoo against the published reference (tests/fixtures/models.json, golden_models.pt)."""
import argparse
import json
import os
import re

import pytest
import torch
import torch.nn as nn

import models
from helper.errors import UsageError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')

REFERENCE = json.load(open(os.path.join(FIXTURES, 'models.json')))         # RepDistiller's zoo + additions
EMKD = json.load(open(os.path.join(FIXTURES, 'models_emkd.json')))         # CRD-EMKD's own definitions
# RepDistiller's ResNet18-152 are full width; under those names the zoo has CRD-EMKD's half-width ones
ZOO_NAME = {name: name + '_full' if name in EMKD else name for name in REFERENCE}
GOLDEN = torch.load(os.path.join(FIXTURES, 'golden_models.pt'), weights_only=False)
X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

# the per-stage base depth each name fixes (CRD-EMKD's block_weight table, per stage)
BASE_DEPTHS = {
    'resnet8': [1] * 3, 'resnet14': [2] * 3, 'resnet20': [3] * 3, 'resnet32': [5] * 3,
    'resnet44': [7] * 3, 'resnet56': [9] * 3, 'resnet110': [18] * 3, 'resnet8x4': [1] * 3,
    'resnet32x4': [5] * 3, 'wrn_16_1': [2] * 3, 'wrn_16_2': [2] * 3, 'wrn_40_1': [6] * 3,
    'wrn_40_2': [6] * 3, 'wrn_10_2': [1] * 3, 'resnext29': [3] * 3, 'resnext101': [11] * 3,
    'ResNet18': [2, 2, 2, 2], 'ResNet34': [3, 4, 6, 3], 'ResNet50': [3, 4, 6, 3],
    'ResNet101': [3, 4, 23, 3], 'ResNet152': [3, 8, 36, 3],
    'vgg8': None, 'vgg13': None, 'MobileNetV2': None, 'ShuffleV1': None, 'ShuffleV2': None,
    'densenet40': None, 'densenet100': None,
    'myresnet20': [3] * 3, 'myresnet32x4': [5] * 3, 'mywrn_40_2': [6] * 3,
    'myResNet34': [3, 4, 6, 3], 'myresnext101': [11] * 3,
}
# stage prefix and block index in a key: layer2.3., block2.layer.3., stage_2.stage_2_bottleneck_3.
BLOCK_KEY = re.compile(r'^(layer\d|block\d\.layer|stage_\d)\.(?:stage_\d_bottleneck_)?(\d+)\.')


def key_shapes(model):
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def shapes(tensors):
    return [list(t.shape) for t in tensors]


def blocks_per_stage(model):
    blocks = {}
    for key in model.state_dict():
        match = BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(match.group(1), set()).add(match.group(2))
    return [len(blocks[stage]) for stage in sorted(blocks)]


def run(model, x=X32):
    with torch.no_grad():
        feats, logits = model(x, is_feat=True)
        pre_feats, pre_logits = model(x, is_feat=True, preact=True)
        plain = model(x)
    assert torch.equal(plain, logits) and torch.equal(pre_logits, logits)
    return feats, pre_feats, logits


def save(obj, tmp_path, folder='run', name='ckpt_epoch_240.pth'):
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return str(path)


def published(name):
    """The published reference entry of a zoo name."""
    if name in EMKD:
        return EMKD[name]
    return REFERENCE[name[:-len('_full')] if name.endswith('_full') else name]


def test_zoo_names():
    # the ImageNet networks are checked against torchvision and mdistiller in test_imagenet.py
    assert set(ZOO_NAME.values()) | {n for n in EMKD if '[' not in n} == set(models.FIXED_DEPTH) - models.IMAGENET_MODELS
    for name in models.VARIABLE_DEPTH:
        assert name.startswith('my') and name[2:] in models.FIXED_DEPTH
    assert len(models.model_dict) == len(models.FIXED_DEPTH) + len(models.VARIABLE_DEPTH) == 56 + 7


@pytest.mark.parametrize('name', sorted(REFERENCE))
def test_fixed_model_matches_reference(name):
    ref = REFERENCE[name]
    model = models.build_model(ZOO_NAME[name]).eval()
    assert key_shapes(model) == ref['state_dict']
    assert sum(p.numel() for p in model.parameters()) == ref['params']
    feats, pre_feats, logits = run(model)
    assert shapes(feats) == ref['feat_shapes_for_2x3x32x32']
    assert shapes(pre_feats) == (ref['preact_feat_shapes'] or ref['feat_shapes_for_2x3x32x32'])
    assert list(logits.shape) == ref['logit_shape']
    assert isinstance(model.get_feat_modules(), nn.ModuleList)
    bns = model.get_bn_before_relu()
    assert len(bns) == len(feats) - 2 and all(isinstance(m, nn.BatchNorm2d) for m in bns)


@pytest.mark.parametrize('name', sorted(GOLDEN))
def test_golden_checkpoints_reproduce(name, tmp_path):
    case = GOLDEN[name]
    path = save(case['checkpoint'], tmp_path, f'{name}_vanilla')
    names = [None] + ([f'my{name}'] if f'my{name}' in models.model_dict else [])
    for model_name in names:  # None: the name comes from the folder
        model, meta = models.load_model(path, model_name)
        assert meta == {'epoch': 240, 'accuracy': case['checkpoint']['accuracy']}
        feats, pre_feats, logits = run(model.eval(), case['input'])
        torch.testing.assert_close(logits, case['logit'], rtol=1e-4, atol=1e-5)
        for got, want in zip(feats, case['feats'], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for got, want in zip(pre_feats, case['preact_feats'], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', sorted(set(models.VARIABLE_DEPTH) - models.IMAGENET_MODELS))
def test_variable_depth_models(name):
    base = name[2:]
    assert models.is_variable_depth(name) and not models.is_variable_depth(base)
    # defaults: the base network, key for key (shapes only, built without memory); published
    # myResNet* name their shortcuts `shortcut` where ResNet* say `downsample`
    defaults = models.state_dict_shapes(name)
    rename = ('.downsample.', '.shortcut.') if base in EMKD else ('', '')
    want = [[k.replace(*rename), shape] for k, shape in published(base)['state_dict']]
    assert [[k, list(s)] for k, s in defaults.items()] == want
    n_stages = len(models.base_depth(base))
    depth = [2, 1, 3] if n_stages == 3 else [1, 2, 1, 2]
    model = models.build_model(name, block_depth=depth).eval()
    assert blocks_per_stage(model) == depth
    feats, pre_feats, logits = run(model)
    assert shapes(feats) == published(base)['feat_shapes_for_2x3x32x32']
    assert shapes(pre_feats) == published(base).get('preact_feat_shapes', shapes(feats))


def test_myresnet20_custom_blocks():
    model = models.build_model('myresnet20', num_classes=10, block_depth='3,7,2')
    assert blocks_per_stage(model) == [3, 7, 2]
    assert blocks_per_stage(models.build_model('myresnet20')) == [3, 3, 3]
    assert blocks_per_stage(models.build_model('resnet110')) == [18, 18, 18]
    assert model(X32).shape == (2, 10)


@pytest.mark.parametrize('name', ['resnet8', 'wrn_16_1', 'vgg8', 'ResNet18', 'MobileNetV2',
                                  'ShuffleV1', 'ShuffleV2', 'densenet40', 'resnext29'])
def test_64x64_inputs(name):
    model = models.build_model(name).eval()
    with torch.no_grad():
        feats, logits = model(torch.randn(2, 3, 64, 64), is_feat=True)
    assert list(logits.shape) == [2, 100]
    assert list(feats[-1].shape) == published(name)['feat_shapes_for_2x3x32x32'][-1]
    if name == 'vgg8':  # published: the 4th max-pool runs only on 64x64 inputs
        assert list(feats[4].shape) == [2, 512, 4, 4]


@pytest.mark.parametrize('name', sorted(BASE_DEPTHS))
def test_base_depth(name):
    assert models.base_depth(name) == BASE_DEPTHS[name]


def test_parse_block_depth_accepts():
    assert models.parse_block_depth('myresnet20', None) is None
    assert models.parse_block_depth('resnet20', None) is None
    assert models.parse_block_depth('myresnet20', '3,7,2') == [3, 7, 2]
    assert models.parse_block_depth('myresnet20', ' 3, 7 ,2') == [3, 7, 2]
    assert models.parse_block_depth('myResNet18', [1, 2, 3, 4]) == [1, 2, 3, 4]


@pytest.mark.parametrize('name, value, words', [
    ('myresnet20', '3,7', 'needs 3 block counts'),
    ('myResNet18', '2,2,2', 'needs 4 block counts'),
    ('myresnet20', '3,0,2', 'at least 1 block'),
    ('myresnet20', '3,-1,2', 'at least 1 block'),
    ('myresnet20', '3,2.5,2', "'2.5' is not a whole number"),
    ('myresnet20', '3,a,2', "'a' is not a whole number"),
    ('myresnet20', '3,,2', "'' is not a whole number"),
    ('myresnet20', [3, 2.0, 2], "'2.0' is not a whole number"),
    ('myresnet20', 3, 'needs 3 block counts'),
    ('resnet20', '3,3,3', 'resnet20 has a fixed depth (use myresnet20'),
    ('vgg8', '1,1,1', 'vgg8 has a fixed depth'),
    ('myresnet21', '3,3,3', "unknown model 'myresnet21'"),
])
def test_bad_block_depth(name, value, words, monkeypatch):
    def never(**kwargs):
        raise AssertionError('built before block_depth was checked')
    if name in models.model_dict:
        monkeypatch.setitem(models.model_dict, name, never)
    with pytest.raises(UsageError) as err:
        models.build_model(name, block_depth=value)
    assert words in str(err.value) and '\n' not in str(err.value)


def test_unknown_name_lists_close_names():
    with pytest.raises(UsageError, match='resnet20'):
        models.build_model('resnet21')
    with pytest.raises(UsageError, match='wrn_40_2'):
        models.base_depth('wrn_40_3')


@pytest.mark.parametrize('path, name', [
    ('save/models/resnet110_vanilla/ckpt_epoch_240.pth', 'resnet110'),
    ('save/models/resnet32x4_vanilla/ckpt_epoch_240.pth', 'resnet32x4'),
    ('/abs/wrn_40_2_vanilla/ckpt_epoch_240.pth', 'wrn_40_2'),
    ('ResNet50_vanilla/ckpt_epoch_240.pth', 'ResNet50'),
    ('x/vgg13_vanilla/best.pth', 'vgg13'),
    ('x/MobileNetV2_cifar100_lr_0.05/ckpt.pth', 'MobileNetV2'),
    ('x/teacher_resnet56/ckpt.pth', None),
    ('x/wrn_40/ckpt.pth', None),
    ('save/models/myresnet20-3-7-2_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth', 'myresnet20'),
    ('save/models/mywrn_40_1-2-6-1_cifar100_lr_0.05_decay_0.0005_trial_0/best.pth', 'mywrn_40_1'),
    ('save/models/mywrn_40_1_cifar100_lr_0.05_decay_0.0005_trial_0/best.pth', 'mywrn_40_1'),
])
def test_name_from_path(path, name):
    assert models.name_from_path(path) == name


@pytest.fixture(scope='module')
def resnet8_sd():
    return GOLDEN['resnet8']['checkpoint']['model']


def assert_resnet8_golden(model):
    with torch.no_grad():
        logits = model.eval()(GOLDEN['resnet8']['input'])
    torch.testing.assert_close(logits, GOLDEN['resnet8']['logit'], rtol=1e-4, atol=1e-5)


def test_loader_bare_state_dict(resnet8_sd, tmp_path):
    model, meta = models.load_model(save(dict(resnet8_sd), tmp_path, 'resnet8_vanilla'))
    assert meta == {}
    assert_resnet8_golden(model)


def test_loader_strips_module_prefix(resnet8_sd, tmp_path):
    wrapped = {'model': {'module.' + k: v for k, v in resnet8_sd.items()}, 'epoch': 3}
    state_dict, meta = models.read_state_dict(save(wrapped, tmp_path))
    assert list(state_dict) == list(resnet8_sd) and meta == {'epoch': 3}
    model, _ = models.load_model(save(wrapped, tmp_path), 'resnet8')
    assert_resnet8_golden(model)


def test_loader_legacy_namespace(resnet8_sd, tmp_path):
    opt = argparse.Namespace(model='resnet8', learning_rate=0.05, lr_decay_epochs=[150, 180, 210])
    path = save({'model': resnet8_sd, 'opt': opt, 'epoch': 240, 'accuracy': 70.1}, tmp_path,
                'resnet8_cifar100_lr_0.05_decay_0.0005_trial_0')
    model, meta = models.load_model(path)
    assert meta['opt'] == opt and meta['epoch'] == 240
    assert_resnet8_golden(model)


ran_code = []


def mark_ran(tag):
    ran_code.append(tag)


class Payload:
    def __reduce__(self):
        return mark_ran, ('unpickled',)


def test_loader_refuses_arbitrary_objects(resnet8_sd, tmp_path):
    path = save({'model': resnet8_sd, 'extra': Payload()}, tmp_path)
    with pytest.raises(UsageError, match=r'holds a Python object \(\S*mark_ran\)'):
        models.load_model(path, 'resnet8')
    assert ran_code == []


def test_loader_unreadable_files(resnet8_sd, tmp_path):
    with pytest.raises(UsageError, match='checkpoint not found'):
        models.read_state_dict(str(tmp_path / 'missing.pth'))
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'definitely not a checkpoint')
    with pytest.raises(UsageError, match='not a PyTorch checkpoint'):
        models.read_state_dict(str(garbage))
    good = save({'model': resnet8_sd}, tmp_path)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(good, 'rb').read()[:5000])
    with pytest.raises(UsageError, match='truncated or corrupted'):
        models.read_state_dict(str(truncated))
    with pytest.raises(UsageError, match='not a model checkpoint'):
        models.read_state_dict(save({'epoch': 3, 'accuracy': 1.0}, tmp_path))


def test_mismatch_names_guessed_architecture(resnet8_sd, tmp_path):
    # resnet8 weights in a resnet14 folder: resnet14 wants a second block per stage
    path = save({'model': resnet8_sd}, tmp_path, 'resnet14_vanilla')
    with pytest.raises(UsageError) as err:
        models.load_model(path)
    message = str(err.value)
    assert 'does not fit resnet14' in message
    assert "missing keys (first 'layer1.1.conv1.weight')" in message
    assert 'the weights match resnet8' in message and '\n' not in message

    resnet14 = models.resnet14().state_dict()
    with pytest.raises(UsageError) as err:
        models.load_model(save(resnet14, tmp_path, 'resnet8_vanilla'))
    message = str(err.value)
    assert 'does not fit resnet8' in message
    assert "unexpected keys (first 'layer1.1.conv1.weight')" in message
    assert 'the weights match resnet14' in message


def test_mismatch_same_keys_other_shapes(tmp_path):
    path = save({'model': models.wrn_16_2().state_dict()}, tmp_path, 'wrn_40_2_vanilla')
    with pytest.raises(UsageError, match='does not fit wrn_40_2: .*the weights match wrn_16_2'):
        models.load_model(path)
    cifar10 = save(models.resnet8(num_classes=10).state_dict(), tmp_path, 'resnet8_c10')
    with pytest.raises(UsageError, match=r"'fc.weight' has shape \[10, 64\] in the checkpoint, "
                                         r"\[100, 64\] in the model"):
        models.load_model(cifar10)
    model, _ = models.load_model(cifar10, num_classes=10)
    assert model(X32).shape == (2, 10)
    assert models.guess_architecture(models.read_state_dict(cifar10)[0]) == 'resnet8'


def test_mismatch_unknown_weights(resnet8_sd, tmp_path):
    foreign = {'encoder.weight': torch.zeros(3, 3), 'encoder.bias': torch.zeros(3)}
    with pytest.raises(UsageError, match='match no fixed-depth architecture'):
        models.load_model(save(foreign, tmp_path), 'resnet8')
    with pytest.raises(UsageError, match='from its folder name.*the weights match resnet8'):
        models.load_model(save(resnet8_sd, tmp_path, 'my_teacher'))


def test_variable_depth_checkpoint_round_trip(tmp_path):
    student = models.build_model('myresnet20', block_depth=[1, 3, 2]).eval()
    path = save({'model': student.state_dict()}, tmp_path, 'S_myresnet20_T_resnet110')
    loaded, _ = models.load_model(path, 'myresnet20', block_depth='1,3,2')
    with torch.no_grad():
        assert torch.equal(loaded.eval()(X32), student(X32))
    with pytest.raises(UsageError, match='does not fit myresnet20'):
        models.load_model(path, 'myresnet20')


def _emkd_name(entry):
    """'myresnet20[3,7,2]' -> ('myresnet20', [3, 7, 2]); 'ResNet18' -> ('ResNet18', None)."""
    match = re.fullmatch(r'(\w+)(?:\[([\d,]+)\])?', entry)
    return match.group(1), ([int(d) for d in match.group(2).split(",")] if match.group(2) else None)


@pytest.mark.parametrize('entry', sorted(EMKD))
def test_emkd_model_matches_reference(entry):
    """CRD-EMKD's own definitions: a checkpoint trained with it holds exactly these keys."""
    ref = EMKD[entry]
    name, depth = _emkd_name(entry)
    model = models.build_model(name, block_depth=depth).eval()
    assert key_shapes(model) == ref['state_dict']
    assert sum(p.numel() for p in model.parameters()) == ref['params']
    with torch.no_grad():
        feats, logits = model(X32, is_feat=True)
    assert shapes(feats) == ref['feat_shapes_for_2x3x32x32'] and list(logits.shape) == ref['logit_shape']


def test_half_width_resnets_are_crd_emkd_ones():
    assert EMKD['ResNet18']['params'] == 2_820_740  # RepDistiller's full-width ResNet18: 11.22M
    model = models.build_model('ResNet18')
    assert model.conv1.out_channels == 32 and model.fc.in_features == 256
    assert [s[0].conv1.out_channels for s in model.stages()] == [32, 64, 128, 256]
    assert 'layer2.0.downsample.0.weight' in model.state_dict()
    assert 'layer2.0.shortcut.0.weight' in models.build_model('myResNet18').state_dict()
    full = models.build_model('ResNet18_full')
    assert full.conv1.out_channels == 64 and full.linear.in_features == 512
    assert 'layer2.0.shortcut.0.weight' in full.state_dict()


@pytest.mark.parametrize('trained, asked', [('ResNet18_full', 'ResNet18'), ('ResNet18', 'ResNet18'),
                                            ('ResNet18_full', None), ('ResNet18', None),
                                            ('ResNet18', 'ResNet18_full')])
def test_loader_tells_the_width_from_the_weights(trained, asked, tmp_path):
    """RepDistiller's ResNet50 teacher lives in ResNet50_vanilla/: the folder names the depth, the
    weights tell the width."""
    torch.manual_seed(0)
    source = models.build_model(trained).eval()
    path = save({'model': source.state_dict(), 'epoch': 240}, tmp_path, 'ResNet18_vanilla')
    model, _ = models.load_model(path, asked)
    assert type(model.stages()[0][0]) is type(source.stages()[0][0])
    assert key_shapes(model) == key_shapes(source)
    with torch.no_grad():
        assert torch.equal(model.eval()(X32), source(X32))


def test_full_width_resnet50_teacher_name_resolves(tmp_path):
    path = save({'model': models.build_model('ResNet50_full').state_dict()}, tmp_path, 'ResNet50_vanilla')
    model, _ = models.load_model(path)
    assert model.linear.in_features == 2048


@pytest.mark.parametrize('entry', ['ResNet18', 'ResNet50', 'myResNet18[2,2,6,1]', 'myresnet20[3,7,2]'])
def test_crd_emkd_checkpoint_loads(entry, tmp_path):
    """A checkpoint with exactly CRD-EMKD's keys and shapes (built from the reference, not from our
    models) loads strictly."""
    name, depth = _emkd_name(entry)
    weights = {k: torch.tensor(7) if k.endswith('num_batches_tracked') else torch.full(shape, 0.5)
               for k, shape in EMKD[entry]['state_dict']}
    path = save({'epoch': 240, 'model': weights, 'accuracy': 70.0}, tmp_path, f'{name}_vanilla')
    model, meta = models.load_model(path, block_depth=depth)
    assert meta['epoch'] == 240
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
