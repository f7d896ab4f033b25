"""MobileNetV2 for 32x32 inputs, as used in RepDistiller's CIFAR-100 tables.

`mobile_half` is the half-width network (expansion 6) that the published tables
call MobileNetV2. Attribute names follow the published checkpoints.
"""
import math

import torch.nn as nn
import torch.nn.functional as F

# (expansion, output channels at width 1, blocks, stride of the first block)
_STAGES = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]
# blocks groups whose outputs are the reported stage features
_FEAT_GROUPS = (1, 2, 4, 6)


def _conv_bn_relu(c_in, c_out, kernel, stride):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expansion):
        super().__init__()
        hidden = c_in * expansion
        self.use_res_connect = stride == 1 and c_in == c_out
        # indices 0..7 are the published parameter names; the last BN has no ReLU
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    def __init__(self, expansion=6, width_mult=1.0, num_classes=100):
        super().__init__()
        c_in = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, c_in, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in _STAGES:
            c_out = int(c * width_mult)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t or expansion))
                c_in = c_out
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(c_in, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()

    def get_bn_before_relu(self):
        return [self.blocks[i][-1].conv[-1] for i in _FEAT_GROUPS]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def forward(self, x, is_feat=False, preact=False):
        # stage outputs end in a linear BN (no ReLU), so preact changes nothing
        out = self.conv1(x)
        feats = [out]
        for i, group in enumerate(self.blocks):
            out = group(out)
            if i in _FEAT_GROUPS:
                feats.append(out)
        out = self.conv2(out)
        # adaptive pooling equals the published AvgPool2d(2, ceil_mode=True) at 32x32
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        feats.append(out)
        logits = self.classifier(out)
        return (feats, logits) if is_feat else logits


def mobile_half(num_classes=100):
    return MobileNetV2(expansion=6, width_mult=0.5, num_classes=num_classes)
