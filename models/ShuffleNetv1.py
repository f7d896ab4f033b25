"""ShuffleNet V1 (g=3) for 32x32 inputs, as in RepDistiller's CIFAR-100 tables."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .resnet import Stage


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Bottleneck(nn.Module):
    """Returns (output, output before the final ReLU)."""

    def __init__(self, c_in, c_out, stride, groups):
        super().__init__()
        self.stride = stride
        mid = c_out // 4
        # the stem has only 24 channels, too few to split into groups
        self.first_groups = 1 if c_in == 24 else groups
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            # downsampling blocks concatenate a pooled shortcut instead of adding it
            pre = torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        else:
            pre = out + x
        return F.relu(pre), pre


class ShuffleNet(nn.Module):
    def __init__(self, out_planes, num_blocks, groups, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        c_in = 24
        stages = []
        for c_out, n in zip(out_planes, num_blocks):
            # the first block's output is concatenated with its c_in shortcut channels
            blocks = [Bottleneck(c_in, c_out - c_in, 2, groups)]
            blocks += [Bottleneck(c_out, c_out, 1, groups) for _ in range(n - 1)]
            stages.append(Stage(*blocks))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(out_planes[-1], num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        # RepDistiller raises here; the last block's bn3 is the ResNet-style analogue
        return [layer[-1].bn3 for layer in (self.layer1, self.layer2, self.layer3)]

    def forward(self, x, is_feat=False, preact=False):
        out = F.relu(self.bn1(self.conv1(x)))
        feats, pre_feats = [out], [out]
        for layer in (self.layer1, self.layer2, self.layer3):
            out, pre = layer(out)
            feats.append(out)
            pre_feats.append(pre)
        # adaptive pooling equals the published avg_pool2d(4) at 32x32
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        feats.append(out)
        pre_feats.append(out)
        logits = self.linear(out)
        if not is_feat:
            return logits
        return (pre_feats if preact else feats), logits


def ShuffleV1(num_classes=100):
    return ShuffleNet(out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3,
                      num_classes=num_classes)
