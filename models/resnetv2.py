"""ResNet18-152 with a 3x3 stride-1 stem for 32x32 inputs, in two widths:

- ResNet18 ... ResNet152 and myResNet18 ... myResNet152 (`block_depth` blocks per stage) are
  CRD-EMKD's half-width networks: stem 32, stages 32/64/128/256, classifier `fc`; the shortcut is
  `downsample` in ResNet* and `shortcut` in myResNet*, as in the published files, so checkpoints
  trained with CRD-EMKD load.
- ResNet18_full ... ResNet152_full are RepDistiller's (stem 64, stages 64/128/256/512,
  classifier `linear`, shortcut `shortcut`): its ResNet50 teacher loads as `--path_t`.
"""
import torch.nn as nn
import torch.nn.functional as F

from .resnet import Stage, init_conv_weights

HALF = (32, 64, 128, 256)
FULL = (64, 128, 256, 512)


def _shortcut(in_planes, out_planes, stride):
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()  # identity, no parameters
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, shortcut='shortcut'):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut_name = shortcut
        setattr(self, shortcut, _shortcut(in_planes, planes, stride))

    def last_bn(self):
        return self.bn2

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        pre = self.bn2(self.conv2(out)) + getattr(self, self.shortcut_name)(x)
        return F.relu(pre), pre


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, shortcut='shortcut'):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut_name = shortcut
        setattr(self, shortcut, _shortcut(in_planes, planes * 4, stride))

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        pre = self.bn3(self.conv3(out)) + getattr(self, self.shortcut_name)(x)
        return F.relu(pre), pre


class ResNet(nn.Module):
    def __init__(self, block, blocks, num_classes=100, widths=HALF, shortcut='downsample',
                 classifier='fc'):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(block(in_planes, planes, stride if j == 0 else 1, shortcut))
                in_planes = planes * block.expansion
            setattr(self, f'layer{i + 1}', Stage(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier_name = classifier
        setattr(self, classifier, nn.Linear(in_planes, num_classes))
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
        logits = getattr(self, self.classifier_name)(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


SPECS = {
    'ResNet18': (BasicBlock, [2, 2, 2, 2]), 'ResNet34': (BasicBlock, [3, 4, 6, 3]),
    'ResNet50': (Bottleneck, [3, 4, 6, 3]), 'ResNet101': (Bottleneck, [3, 4, 23, 3]),
    'ResNet152': (Bottleneck, [3, 8, 36, 3]),
}
FULL_SUFFIX = '_full'
# RepDistiller's full-width name of each CRD-EMKD half-width name
FULL_WIDTH = {name: name + FULL_SUFFIX for name in SPECS}
BASE_DEPTH = {**{name: blocks for name, (_, blocks) in SPECS.items()},
              **{FULL_WIDTH[name]: blocks for name, (_, blocks) in SPECS.items()}}


def half(name, num_classes=100):
    block, blocks = SPECS[name]
    return ResNet(block, blocks, num_classes)


def full(name, num_classes=100):
    block, blocks = SPECS[name]
    return ResNet(block, blocks, num_classes, FULL, shortcut='shortcut', classifier='linear')


def variable(name, num_classes=100, block_depth=None):
    block, blocks = SPECS[name]
    return ResNet(block, blocks if block_depth is None else block_depth, num_classes,
                  shortcut='shortcut')


def ResNet18(num_classes=100):
    return half('ResNet18', num_classes)


def ResNet34(num_classes=100):
    return half('ResNet34', num_classes)


def ResNet50(num_classes=100):
    return half('ResNet50', num_classes)


def ResNet101(num_classes=100):
    return half('ResNet101', num_classes)


def ResNet152(num_classes=100):
    return half('ResNet152', num_classes)


def ResNet18_full(num_classes=100):
    return full('ResNet18', num_classes)


def ResNet34_full(num_classes=100):
    return full('ResNet34', num_classes)


def ResNet50_full(num_classes=100):
    return full('ResNet50', num_classes)


def ResNet101_full(num_classes=100):
    return full('ResNet101', num_classes)


def ResNet152_full(num_classes=100):
    return full('ResNet152', num_classes)


def myResNet18(num_classes=100, block_depth=None):
    return variable('ResNet18', num_classes, block_depth)


def myResNet34(num_classes=100, block_depth=None):
    return variable('ResNet34', num_classes, block_depth)


def myResNet50(num_classes=100, block_depth=None):
    return variable('ResNet50', num_classes, block_depth)


def myResNet101(num_classes=100, block_depth=None):
    return variable('ResNet101', num_classes, block_depth)


def myResNet152(num_classes=100, block_depth=None):
    return variable('ResNet152', num_classes, block_depth)
