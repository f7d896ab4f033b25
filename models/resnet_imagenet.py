"""torchvision's ImageNet ResNet18/34/50 (7x7 stride-2 stem and a max-pool: 224x224 inputs) with
torchvision's parameter names, so torchvision's pretrained weights load strictly; the
myresnet*_imagenet names take `block_depth` blocks per stage like the CIFAR my* models.

Features follow mdistiller's ImageNet ResNet: the stem before the max-pool, then the 4 stages.
"""
import torch.nn as nn
import torch.nn.functional as F

from .resnet import BasicBlock, Stage, init_conv_weights  # CIFAR's block has torchvision's names


def _downsample(in_planes, out_planes, stride):
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class Bottleneck(nn.Module):
    """torchvision's (ResNet v1.5): the stride sits on the 3x3 convolution."""
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _downsample(in_planes, planes * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        pre = self.bn3(self.conv3(out)) + shortcut
        return F.relu(pre), pre


class ImageNetResNet(nn.Module):
    def __init__(self, block, blocks, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for i, (n, planes) in enumerate(zip(blocks, [64, 128, 256, 512])):
            layers = []
            for j in range(n):
                layers.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes * getattr(block, 'expansion', 1)
            setattr(self, f'layer{i + 1}', Stage(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_conv_weights(self)  # torchvision's: He (fan_out), BN weight 1 and bias 0

    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.maxpool, *self.stages()])

    def get_bn_before_relu(self):
        return [getattr(stage[-1], 'bn3', stage[-1].bn2) for stage in self.stages()]

    def forward(self, x, is_feat=False, preact=False):
        stem_pre = self.bn1(self.conv1(x))
        x = F.relu(stem_pre)
        feats, pres = [x], [stem_pre]
        x = self.maxpool(x)
        for stage in self.stages():
            x, pre = stage(x)
            feats.append(x)
            pres.append(pre)
        x = self.avgpool(x).flatten(1)
        logits = self.fc(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


SPECS = {
    'resnet18_imagenet': (BasicBlock, [2, 2, 2, 2]),
    'resnet34_imagenet': (BasicBlock, [3, 4, 6, 3]),
    'resnet50_imagenet': (Bottleneck, [3, 4, 6, 3]),
}
BASE_DEPTH = {name: blocks for name, (_, blocks) in SPECS.items()}


def build(name, num_classes=1000, block_depth=None):
    block, blocks = SPECS[name]
    return ImageNetResNet(block, blocks if block_depth is None else block_depth, num_classes)


def resnet18_imagenet(num_classes=1000):
    return build('resnet18_imagenet', num_classes)


def resnet34_imagenet(num_classes=1000):
    return build('resnet34_imagenet', num_classes)


def resnet50_imagenet(num_classes=1000):
    return build('resnet50_imagenet', num_classes)


def myresnet18_imagenet(num_classes=1000, block_depth=None):
    return build('resnet18_imagenet', num_classes, block_depth)


def myresnet34_imagenet(num_classes=1000, block_depth=None):
    return build('resnet34_imagenet', num_classes, block_depth)


def myresnet50_imagenet(num_classes=1000, block_depth=None):
    return build('resnet50_imagenet', num_classes, block_depth)
