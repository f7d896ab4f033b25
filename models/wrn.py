"""Wide ResNets (Zagoruyko & Komodakis 2016) with RepDistiller's parameter names; wrn_10_2 is the
CRD-EMKD addition, mywrn_* take `block_depth` blocks per stage."""
import torch.nn as nn
import torch.nn.functional as F

from .resnet import init_conv_weights

# name -> (depth, widen factor); depth 6n+4 gives n blocks in each of the 3 stages
SPECS = {'wrn_10_2': (10, 2), 'wrn_16_1': (16, 1), 'wrn_16_2': (16, 2),
         'wrn_40_1': (40, 1), 'wrn_40_2': (40, 2)}
BASE_DEPTH = {name: [(depth - 4) // 6] * 3 for name, (depth, _) in SPECS.items()}


class BasicBlock(nn.Module):
    """Pre-activation block. When the width changes, the shortcut conv sees the activated input."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.convShortcut = None
        if in_planes != out_planes:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + self.conv2(F.relu(self.bn2(self.conv1(act))))


class WideStage(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, blocks, widen_factor, num_classes=100):
        super().__init__()
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = WideStage(blocks[0], widths[0], widths[1], 1)
        self.block2 = WideStage(blocks[1], widths[1], widths[2], 2)
        self.block3 = WideStage(blocks[2], widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(widths[3], num_classes)
        init_conv_weights(self)
        nn.init.zeros_(self.fc.bias)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        # stages end without an activation: the BN that follows each one plays that role
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        pooled = F.adaptive_avg_pool2d(self.relu(self.bn1(f3)), 1).flatten(1)
        logits = self.fc(pooled)
        if not is_feat:
            return logits
        if preact:
            # as published: the next BN applied to each stage output (in train mode this BN call
            # also updates its running statistics, as the published code does)
            f1, f2, f3 = (bn(f) for bn, f in zip(self.get_bn_before_relu(), (f1, f2, f3)))
        return [f0, f1, f2, f3, pooled], logits


def build(name, num_classes=100, block_depth=None):
    blocks = BASE_DEPTH[name] if block_depth is None else block_depth
    return WideResNet(blocks, SPECS[name][1], num_classes)


def wrn_10_2(num_classes=100):
    return build('wrn_10_2', num_classes)


def wrn_16_1(num_classes=100):
    return build('wrn_16_1', num_classes)


def wrn_16_2(num_classes=100):
    return build('wrn_16_2', num_classes)


def wrn_40_1(num_classes=100):
    return build('wrn_40_1', num_classes)


def wrn_40_2(num_classes=100):
    return build('wrn_40_2', num_classes)


def mywrn_16_1(num_classes=100, block_depth=None):
    return build('wrn_16_1', num_classes, block_depth)


def mywrn_16_2(num_classes=100, block_depth=None):
    return build('wrn_16_2', num_classes, block_depth)


def mywrn_40_1(num_classes=100, block_depth=None):
    return build('wrn_40_1', num_classes, block_depth)


def mywrn_40_2(num_classes=100, block_depth=None):
    return build('wrn_40_2', num_classes, block_depth)
