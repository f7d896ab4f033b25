"""CIFAR ResNeXt (cardinality 2, widen factor 4), added by CRD-EMKD.

resnext29 / resnext101 have 3 / 11 bottlenecks in each of the 3 stages; the my*
variants take any per-stage block counts (`block_depth`). Attribute names follow
the CRD-EMKD checkpoints.
"""
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init

from .resnet import Stage

RESNEXT_BASE_DEPTH = {'resnext29': [3, 3, 3], 'resnext101': [11, 11, 11]}


class ResNeXtBottleneck(nn.Module):
    """1x1 reduce, grouped 3x3, 1x1 expand; returns (output, output before the final ReLU)."""

    def __init__(self, c_in, c_out, stride, cardinality, widen_factor):
        super().__init__()
        width = cardinality * c_out // widen_factor
        self.conv_reduce = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(width)
        self.conv_conv = nn.Conv2d(width, width, 3, stride=stride, padding=1,
                                   groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.conv_expand = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(c_out)
        # an empty Sequential is the identity and keeps the published key names
        self.shortcut = nn.Sequential()
        if c_in != c_out:
            self.shortcut.add_module('shortcut_conv', nn.Conv2d(c_in, c_out, 1, stride=stride,
                                                                bias=False))
            self.shortcut.add_module('shortcut_bn', nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        pre = self.bn_expand(self.conv_expand(out)) + self.shortcut(x)
        return F.relu(pre), pre


class CifarResNeXt(nn.Module):
    def __init__(self, block_depth, cardinality=2, widen_factor=4, num_classes=100):
        super().__init__()
        # models.parse_block_depth gives users the friendly error; this guards direct calls
        if len(block_depth) != 3 or any(n < 1 for n in block_depth):
            raise ValueError('ResNeXt needs 3 positive block counts, got %r' % (block_depth,))
        self.block_depth = list(block_depth)
        widths = [64, 64 * widen_factor, 128 * widen_factor, 256 * widen_factor]
        self.conv_1_3x3 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        for i, n in enumerate(block_depth):
            name = 'stage_%d' % (i + 1)
            stage = Stage()
            for j in range(n):
                c_in = widths[i] if j == 0 else widths[i + 1]
                # stage 1 keeps the 32x32 resolution; later stages halve it
                stride = 2 if j == 0 and i > 0 else 1
                stage.add_module('%s_bottleneck_%d' % (name, j),
                                 ResNeXtBottleneck(c_in, widths[i + 1], stride, cardinality,
                                                   widen_factor))
            setattr(self, name, stage)
        self.fc = nn.Linear(widths[-1], num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode='fan_out')
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
        init.kaiming_normal_(self.fc.weight)
        init.zeros_(self.fc.bias)

    @property
    def stages(self):
        return [self.stage_1, self.stage_2, self.stage_3]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv_1_3x3, self.bn_1, nn.ReLU(inplace=True), *self.stages])

    def get_bn_before_relu(self):
        return [stage[-1].bn_expand for stage in self.stages]

    def forward(self, x, is_feat=False, preact=False):
        # CRD-EMKD ignored preact; we return the pre-ReLU sums, as the CIFAR ResNets do
        out = F.relu(self.bn_1(self.conv_1_3x3(x)))
        feats, pre_feats = [out], [out]
        for stage in self.stages:
            out, pre = stage(out)
            feats.append(out)
            pre_feats.append(pre)
        # adaptive pooling equals the published avg_pool2d(8) at 32x32
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        feats.append(out)
        pre_feats.append(out)
        logits = self.fc(out)
        if not is_feat:
            return logits
        return (pre_feats if preact else feats), logits


def resnext29(num_classes=100):
    return CifarResNeXt(RESNEXT_BASE_DEPTH['resnext29'], num_classes=num_classes)


def resnext101(num_classes=100):
    return CifarResNeXt(RESNEXT_BASE_DEPTH['resnext101'], num_classes=num_classes)


def _variable(name, num_classes, block_depth):
    depth = RESNEXT_BASE_DEPTH[name] if block_depth is None else block_depth
    return CifarResNeXt(depth, num_classes=num_classes)


def myresnext29(num_classes=100, block_depth=None):
    return _variable('resnext29', num_classes, block_depth)


def myresnext101(num_classes=100, block_depth=None):
    return _variable('resnext101', num_classes, block_depth)
