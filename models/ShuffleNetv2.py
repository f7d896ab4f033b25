"""ShuffleNet V2 (1x) for 32x32 inputs, as in RepDistiller's CIFAR-100 tables."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .ShuffleNetv1 import channel_shuffle
from .resnet import Stage


class BasicBlock(nn.Module):
    """Keeps half the channels, transforms the other half.

    Returns (output, pre-ReLU output). As published, the pre-ReLU output is
    taken before the channel shuffle.
    """

    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x):
        half = x.size(1) // 2
        kept, branch = x[:, :half], x[:, half:]
        branch = F.relu(self.bn1(self.conv1(branch)))
        branch = self.bn2(self.conv2(branch))
        branch = self.bn3(self.conv3(branch))
        pre = torch.cat([kept, branch], 1)
        out = channel_shuffle(torch.cat([kept, F.relu(branch)], 1), 2)
        return out, pre


class DownBlock(nn.Module):
    """Stride-2 block: two branches, each giving half the output channels."""

    def __init__(self, c_in, c_out):
        super().__init__()
        mid = c_out // 2
        # left branch: depthwise then pointwise
        self.conv1 = nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv2 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch: pointwise, depthwise, pointwise
        self.conv3 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        out = channel_shuffle(torch.cat([left, right], 1), 2)
        return out, out


class ShuffleNetV2(nn.Module):
    def __init__(self, out_channels, num_blocks, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        c_in = 24
        stages = []
        for c_out, n in zip(out_channels[:3], num_blocks):
            stages.append(Stage(DownBlock(c_in, c_out), *[BasicBlock(c_out) for _ in range(n)]))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(c_in, out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        # RepDistiller raises here; bn3 feeds the ReLU of the last block's branch
        return [layer[-1].bn3 for layer in (self.layer1, self.layer2, self.layer3)]

    def forward(self, x, is_feat=False, preact=False):
        out = F.relu(self.bn1(self.conv1(x)))
        feats, pre_feats = [out], [out]
        for layer in (self.layer1, self.layer2, self.layer3):
            out, pre = layer(out)
            feats.append(out)
            pre_feats.append(pre)
        out = F.relu(self.bn2(self.conv2(out)))
        # adaptive pooling equals the published avg_pool2d(4) at 32x32
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        feats.append(out)
        pre_feats.append(out)
        logits = self.linear(out)
        if not is_feat:
            return logits
        return (pre_feats if preact else feats), logits


def ShuffleV2(num_classes=100):
    return ShuffleNetV2(out_channels=(116, 232, 464, 1024), num_blocks=(3, 7, 3),
                        num_classes=num_classes)
