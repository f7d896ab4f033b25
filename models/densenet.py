"""DenseNet-BC for CIFAR (growth rate 12, compression 0.5), added by CRD-EMKD.

Attribute names follow the CRD-EMKD checkpoints.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    """BN-ReLU-1x1 conv, BN-ReLU-3x3 conv; appends `growth` channels to its input."""

    def __init__(self, c_in, growth, expansion=4):
        super().__init__()
        mid = expansion * growth
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, depth, growth=12, compression=2, num_classes=100):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError('DenseNet-BC depth must be 6n+4, got %d' % depth)
        n = (depth - 4) // 6
        channels = 2 * growth
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)

        def dense_block(c):
            layers = [Bottleneck(c + i * growth, growth) for i in range(n)]
            return nn.Sequential(*layers), c + n * growth

        self.dense1, channels = dense_block(channels)
        self.trans1 = Transition(channels, channels // compression)
        self.dense2, channels = dense_block(channels // compression)
        self.trans2 = Transition(channels, channels // compression)
        self.dense3, channels = dense_block(channels // compression)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.dense1, self.trans1, self.dense2, self.trans2,
                              self.dense3])

    def get_bn_before_relu(self):
        # the BN that normalises each stage output right before a ReLU
        return [self.dense2[0].bn1, self.dense3[0].bn1, self.bn]

    def forward(self, x, is_feat=False, preact=False):
        # no stage output passes through a ReLU, so preact changes nothing (as published)
        f0 = self.conv1(x)
        f1 = self.trans1(self.dense1(f0))
        f2 = self.trans2(self.dense2(f1))
        f3 = self.dense3(f2)
        out = F.relu(self.bn(f3))
        # adaptive pooling equals the published AvgPool2d(8) at 32x32
        f4 = F.adaptive_avg_pool2d(out, 1).flatten(1)
        logits = self.fc(f4)
        return ([f0, f1, f2, f3, f4], logits) if is_feat else logits


def densenet40(num_classes=100):
    return DenseNet(40, num_classes=num_classes)


def densenet100(num_classes=100):
    return DenseNet(100, num_classes=num_classes)
