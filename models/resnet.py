"""CIFAR ResNets (He et al. 2016) with RepDistiller's parameter names, plus the my* variants whose
blocks per stage are set by `block_depth` (CRD-EMKD)."""
import torch.nn as nn
import torch.nn.functional as F

NARROW = [16, 16, 32, 64]
WIDE = [32, 64, 128, 256]  # the x4 variants

# name -> (depth, filters); depth 6n+2 gives n basic blocks in each of the 3 stages
SPECS = {
    'resnet8': (8, NARROW), 'resnet14': (14, NARROW), 'resnet20': (20, NARROW),
    'resnet32': (32, NARROW), 'resnet44': (44, NARROW), 'resnet56': (56, NARROW),
    'resnet110': (110, NARROW), 'resnet8x4': (8, WIDE), 'resnet32x4': (32, WIDE),
}
BASE_DEPTH = {name: [(depth - 2) // 6] * 3 for name, (depth, _) in SPECS.items()}


def init_conv_weights(model):
    """He init (fan_out) for convolutions, as every published CIFAR model here does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Stage(nn.Sequential):
    """Blocks in a row; returns the output and the last block's output before its final ReLU
    (shared by every family whose blocks return (out, preact))."""

    def forward(self, x):
        for block in self:
            x, pre = block(x)
        return x, pre


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        shortcut = x if self.downsample is None else self.downsample(x)
        pre = self.bn2(self.conv2(out)) + shortcut
        return F.relu(pre), pre


class CifarResNet(nn.Module):
    def __init__(self, blocks, filters, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.relu = nn.ReLU()
        in_planes = filters[0]
        for i, (n, planes) in enumerate(zip(blocks, filters[1:])):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(in_planes if j == 0 else planes, planes, stride if j == 0 else 1)
                      for j in range(n)]
            setattr(self, f'layer{i + 1}', Stage(*layers))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(filters[3], num_classes)
        init_conv_weights(self)

    def stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, *self.stages()])

    def get_bn_before_relu(self):
        return [stage[-1].bn2 for stage in self.stages()]

    def forward(self, x, is_feat=False, preact=False):
        x = self.relu(self.bn1(self.conv1(x)))
        feats, pres = [x], [x]
        for stage in self.stages():
            x, pre = stage(x)
            feats.append(x)
            pres.append(pre)
        x = self.avgpool(x).flatten(1)
        logits = self.fc(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


def build(name, num_classes=100, block_depth=None):
    """The named network; block_depth (one count per stage) replaces its blocks per stage."""
    blocks = BASE_DEPTH[name] if block_depth is None else block_depth
    return CifarResNet(blocks, SPECS[name][1], num_classes)


def resnet8(num_classes=100):
    return build('resnet8', num_classes)


def resnet14(num_classes=100):
    return build('resnet14', num_classes)


def resnet20(num_classes=100):
    return build('resnet20', num_classes)


def resnet32(num_classes=100):
    return build('resnet32', num_classes)


def resnet44(num_classes=100):
    return build('resnet44', num_classes)


def resnet56(num_classes=100):
    return build('resnet56', num_classes)


def resnet110(num_classes=100):
    return build('resnet110', num_classes)


def resnet8x4(num_classes=100):
    return build('resnet8x4', num_classes)


def resnet32x4(num_classes=100):
    return build('resnet32x4', num_classes)


def myresnet8(num_classes=100, block_depth=None):
    return build('resnet8', num_classes, block_depth)


def myresnet14(num_classes=100, block_depth=None):
    return build('resnet14', num_classes, block_depth)


def myresnet20(num_classes=100, block_depth=None):
    return build('resnet20', num_classes, block_depth)


def myresnet32(num_classes=100, block_depth=None):
    return build('resnet32', num_classes, block_depth)


def myresnet44(num_classes=100, block_depth=None):
    return build('resnet44', num_classes, block_depth)


def myresnet56(num_classes=100, block_depth=None):
    return build('resnet56', num_classes, block_depth)


def myresnet110(num_classes=100, block_depth=None):
    return build('resnet110', num_classes, block_depth)


def myresnet8x4(num_classes=100, block_depth=None):
    return build('resnet8x4', num_classes, block_depth)


def myresnet32x4(num_classes=100, block_depth=None):
    return build('resnet32x4', num_classes, block_depth)
