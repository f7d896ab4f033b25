"""ReviewKD and OFD against mdistiller's own outputs (tests/fixtures/golden_feature_losses_subset.pt:
a subset of the reference file, copied unchanged): the same features, ABF/connector weights and
teacher BNs must give the published margins and losses, in train and in eval mode."""
import argparse

import pytest
import torch
from torch import nn

from distiller_zoo.ofd import OFDMethod, margins_from_bn
from distiller_zoo.reviewkd import ReviewKDMethod, hcl_loss
from helper.errors import UsageError

FIXTURE = 'tests/fixtures/golden_feature_losses_subset.pt'
STEM = torch.Size([4, 3, 32, 32])   # neither method reads the stem


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def make_opt(model_t, model_s):
    return argparse.Namespace(gamma=1.0, alpha=0.0, beta=1.0, kd_T=4.0, logit_stand=False,
                              model_t=model_t, model_s=model_s)


def feats_with(stages, pooled):
    return [torch.zeros(STEM)] + list(stages) + [pooled]


def shapes(feats):
    return [f.shape for f in feats]


def reviewkd_for(case, mode):
    s = feats_with(case['student_feats'], case['student_pooled'])
    t = feats_with(case['teacher_preact_feats'], case['teacher_pooled'])
    method = ReviewKDMethod(make_opt('resnet56', 'resnet20'), shapes(s), shapes(t), 0)
    method.trainable['fusion'].abfs.load_state_dict(case['abfs_state_dict'])
    return method.train(mode == 'train'), s, t


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_reviewkd_matches_mdistiller(golden, mode):
    case = golden['reviewkd']['resnet56_resnet20']
    method, s, t = reviewkd_for(case, mode)
    fusion = method.trainable['fusion']
    assert [a.conv1[0].in_channels for a in fusion.abfs][::-1] == case['in_channels']
    assert [a.conv2[0].out_channels for a in fusion.abfs][::-1] == case['out_channels']
    assert fusion.sizes == case['shapes'] and fusion.out_sizes == case['out_shapes']
    assert fusion.abfs[0].conv1[0].out_channels == case['mid_channel']
    assert sum(p.numel() for p in method.trainable.parameters()) == case['extra_params']
    loss = method.method_terms(s, None, t, None, {}, epoch=torch.tensor(20.0))['method']
    assert loss.item() == pytest.approx(case['loss'][mode], rel=1e-5)


def test_reviewkd_warmup_and_weights(golden):
    case = golden['reviewkd']['resnet56_resnet20']
    settings = golden['settings']['reviewkd']
    method, s, t = reviewkd_for(case, 'eval')
    early = method.method_terms(s, None, t, None, {}, epoch=5)['method']
    assert early.item() == pytest.approx(case['loss']['eval'] * 5 / settings['warmup_epochs'], rel=1e-5)
    # -b per pair: mdistiller's weight 5, the authors' CIFAR script for the pairs it sets otherwise
    assert ReviewKDMethod.published_weights(make_opt('resnet32x4', 'resnet8x4'))[2] == settings['weight']
    assert ReviewKDMethod.published_weights(make_opt('resnet56', 'myresnet20'))[2] == 0.6
    assert ReviewKDMethod.published_weights(make_opt('resnet32x4', 'ShuffleV2'))[2] == 8.0


def test_hcl_pools_only_below_the_map_size():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    # 2x2 maps: the 4 and 2 pools are skipped; MSE 1 plus 1/2 x the 1x1 pool's 1, over 1 + 1/2
    assert hcl_loss([a], [b]).item() == pytest.approx(1.0)
    a[0, 0, 0, 0] = 4.0   # pooled mean 1 equals the teacher's: only the full-size MSE counts
    assert hcl_loss([a], [b]).item() == pytest.approx((9 + 3) / 4 / 1.5)


def test_reviewkd_names_the_pair_it_cannot_fuse():
    s = [STEM, (4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8), (4, 128, 4, 4), (4, 128)]
    t = [STEM, (4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8), (4, 64)]
    with pytest.raises(UsageError, match=r"^reviewkd cannot fuse vgg8 onto resnet56: .*student's stages are "
                                         r"16x32x32, 32x16x16, 64x8x8, 128x4x4 and the teacher's 16x32x32, "
                                         r"32x16x16, 64x8x8$"):
        ReviewKDMethod(make_opt('resnet56', 'vgg8'), s, t, 0)


class FakeTeacher(nn.Module):
    def __init__(self, weights, biases):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(w.numel()) for w in weights)
        for bn, w, b in zip(self.bns, weights, biases):
            bn.weight.data.copy_(w)
            bn.bias.data.copy_(b)

    def get_bn_before_relu(self):
        return list(self.bns)


def ofd_for(case, mode):
    s = feats_with(case['student_preact_feats'], torch.zeros(4, 8))
    t = feats_with(case['teacher_preact_feats'], torch.zeros(4, 8))
    method = OFDMethod(make_opt('resnet56', 'resnet20'), shapes(s), shapes(t), 0)
    method.bind_teacher(FakeTeacher(case['teacher_bn_weight'], case['teacher_bn_bias']))
    state = {k.removeprefix('connectors.'): v for k, v in case['connectors_state_dict'].items()}
    method.trainable['connectors'].load_state_dict(state)
    return method.train(mode == 'train'), s, t


@pytest.mark.parametrize('pair', ['resnet56_resnet20', 'wrn_40_2_wrn_16_2'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_ofd_matches_mdistiller(golden, pair, mode):
    case = golden['ofd'][pair]
    method, s, t = ofd_for(case, mode)
    for mine, published in zip(method.margins(), case['margins']):
        torch.testing.assert_close(mine, published.reshape(-1), rtol=1e-6, atol=1e-6)
    assert sum(p.numel() for p in method.trainable.parameters()) == case['extra_params']
    loss = method.method_loss(s, None, t, None, {})
    assert loss.item() == pytest.approx(case['loss'][mode], rel=1e-5)


def test_ofd_margin_branches():
    bn = nn.BatchNorm2d(2)
    bn.weight.data = torch.tensor([1.0, -2.0])
    bn.bias.data = torch.tensor([0.0, 20.0])
    margins = margins_from_bn(bn)
    # N(0, 1): E[x | x < 0] = -sqrt(2 / pi); N(20, 4) is almost never negative (Phi(-10) < 0.001): -3 |gamma|
    assert margins.tolist() == pytest.approx([-(2 / torch.pi) ** 0.5, -6.0])


def test_ofd_teacher_without_bn_is_one_line_error():
    s = [STEM, (4, 16, 32, 32), (4, 64)]
    method = OFDMethod(make_opt('densenet40', 'resnet20'), s, s, 0)
    with pytest.raises(UsageError, match=r"^ofd needs the teacher's BN before each stage's last ReLU; "
                                         r"densenet40 has none$"):
        method.bind_teacher(nn.Linear(2, 2))


@pytest.mark.parametrize('name', ['resnet8', 'wrn_16_1', 'ResNet18', 'ResNet18_full', 'vgg8', 'MobileNetV2',
                                  'ShuffleV1', 'densenet40', 'resnext29'])
def test_every_family_exposes_the_bn_before_each_stage_relu(name):
    """OFD binds to a teacher of every CIFAR family: one BN per stage, with the stage's channels;
    its margins are negative (the mean of the negative part of each channel's pre-ReLU output)."""
    import models
    from distiller_zoo.base import feature_shapes
    torch.manual_seed(0)
    teacher = models.build_model(name).eval()
    with torch.no_grad():
        for bn in teacher.get_bn_before_relu():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    shapes = feature_shapes(teacher, preact=True)
    method = OFDMethod(make_opt(name, name), shapes, shapes, 0)
    method.bind_teacher(teacher)
    assert len(teacher.get_bn_before_relu()) == len(shapes) - 2
    assert [m.numel() for m in method.margins()] == [tuple(s)[1] for s in shapes[1:-1]]
    assert all(bool((m < 0).all()) for m in method.margins())


def test_shufflev2_teacher_is_refused_in_one_line():
    """A ShuffleNetV2 stage ends in a concat where only the branch half passes a ReLU: no BN covers
    the stage's channels (mdistiller refuses it as an OFD teacher too)."""
    import models
    from distiller_zoo.base import feature_shapes
    teacher = models.build_model('ShuffleV2').eval()
    shapes = feature_shapes(teacher, preact=True)
    method = OFDMethod(make_opt('ShuffleV2', 'ShuffleV2'), shapes, shapes, 0)
    with pytest.raises(UsageError, match=r"^ofd needs the teacher's BN before each stage's last ReLU; ShuffleV2 "
                                         r"has none with 116 channels for stage 1$"):
        method.bind_teacher(teacher)


def test_train_student_reports_an_unfusable_pair_in_one_line(data, teacher, tmp_path, capsys):
    from helper.engine.options import student_parser
    from helper.engine.run import main
    from helpers_data import student_args, tree
    argv = student_args(data, str(tmp_path), teacher, 'reviewkd', 'vgg8')
    assert main('student', student_parser(), argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert "reviewkd cannot fuse vgg8 onto resnet8: it pairs stages one to one, but the student's stages are " \
           "128x16x16, 256x8x8, 512x4x4, 512x4x4 and the teacher's 16x32x32, 32x16x16, 64x8x8" in err
    assert tree(str(tmp_path)) == {}
