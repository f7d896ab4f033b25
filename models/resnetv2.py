"""ResNet18-152 with a 3x3 stride-1 stem for 32x32 inputs (RepDistiller's resnetv2 parameter names,
so the published ResNet50 teacher loads), plus myResNet* with `block_depth` blocks per stage."""
import torch.nn as nn
import torch.nn.functional as F

from .resnet import Stage, init_conv_weights


def _shortcut(in_planes, out_planes, stride):
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()  # identity, no parameters
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def last_bn(self):
        return self.bn2

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        pre = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(pre), pre


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(in_planes, planes * 4, stride)

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        pre = self.bn3(self.conv3(out)) + self.shortcut(x)
        return F.relu(pre), pre


class ResNet(nn.Module):
    def __init__(self, block, blocks, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for i, (n, planes) in enumerate(zip(blocks, [64, 128, 256, 512])):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(block(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * block.expansion
            setattr(self, f'layer{i + 1}', Stage(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        init_conv_weights(self)

    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, *self.stages()])

    def get_bn_before_relu(self):
        return [stage[-1].last_bn() for stage in self.stages()]

    def forward(self, x, is_feat=False, preact=False):
        x = F.relu(self.bn1(self.conv1(x)))
        feats, pres = [x], [x]
        for stage in self.stages():
            x, pre = stage(x)
            feats.append(x)
            pres.append(pre)
        x = self.avgpool(x).flatten(1)
        logits = self.linear(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


SPECS = {
    'ResNet18': (BasicBlock, [2, 2, 2, 2]), 'ResNet34': (BasicBlock, [3, 4, 6, 3]),
    'ResNet50': (Bottleneck, [3, 4, 6, 3]), 'ResNet101': (Bottleneck, [3, 4, 23, 3]),
    'ResNet152': (Bottleneck, [3, 8, 36, 3]),
}
BASE_DEPTH = {name: blocks for name, (_, blocks) in SPECS.items()}


def build(name, num_classes=100, block_depth=None):
    block, blocks = SPECS[name]
    return ResNet(block, blocks if block_depth is None else block_depth, num_classes)


def ResNet18(num_classes=100):
    return build('ResNet18', num_classes)


def ResNet34(num_classes=100):
    return build('ResNet34', num_classes)


def ResNet50(num_classes=100):
    return build('ResNet50', num_classes)


def ResNet101(num_classes=100):
    return build('ResNet101', num_classes)


def ResNet152(num_classes=100):
    return build('ResNet152', num_classes)


def myResNet18(num_classes=100, block_depth=None):
    return build('ResNet18', num_classes, block_depth)


def myResNet34(num_classes=100, block_depth=None):
    return build('ResNet34', num_classes, block_depth)


def myResNet50(num_classes=100, block_depth=None):
    return build('ResNet50', num_classes, block_depth)


def myResNet101(num_classes=100, block_depth=None):
    return build('ResNet101', num_classes, block_depth)


def myResNet152(num_classes=100, block_depth=None):
    return build('ResNet152', num_classes, block_depth)
