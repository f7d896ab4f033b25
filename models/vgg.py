"""VGG with BatchNorm for CIFAR (fully connected layers removed), RepDistiller's parameter names."""
import torch.nn as nn
import torch.nn.functional as F

from .resnet import init_conv_weights

# conv widths of the 5 blocks; a 2x2 max-pool separates blocks
CONFIGS = {
    'vgg8': [[64], [128], [256], [512], [512]],
    'vgg11': [[64], [128], [256, 256], [512, 512], [512, 512]],
    'vgg13': [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    'vgg16': [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    'vgg19': [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512],
              [512, 512, 512, 512]],
}


def _block(widths, in_channels):
    """conv-BN-ReLU repeated, without the final ReLU (so the block ends on its BN)."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, config, num_classes=100):
        super().__init__()
        in_channels = 3
        for i, widths in enumerate(config):
            setattr(self, f'block{i}', _block(widths, in_channels))
            in_channels = widths[-1]
        self.pool0, self.pool1, self.pool2, self.pool3 = (nn.MaxPool2d(2, 2) for _ in range(4))
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)
        init_conv_weights(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def blocks(self):
        return [self.block0, self.block1, self.block2, self.block3, self.block4]

    def get_feat_modules(self):
        pools = [self.pool0, self.pool1, self.pool2, self.pool3, self.pool4]
        return nn.ModuleList([m for pair in zip(self.blocks(), pools) for m in pair])

    def get_bn_before_relu(self):
        return [block[-1] for block in self.blocks()[1:]]

    def forward(self, x, is_feat=False, preact=False):
        # published quirk: the 4th max-pool only runs on 64x64 inputs (Tiny-ImageNet)
        skip_pool3 = x.shape[2] != 64
        x = F.relu(self.block0(x))
        feats, pres = [x], [x]
        pools = [self.pool0, self.pool1, self.pool2, None if skip_pool3 else self.pool3]
        for pool, block in zip(pools, self.blocks()[1:]):
            if pool is not None:
                x = pool(x)
            pre = block(x)
            x = F.relu(pre)
            feats.append(x)
            pres.append(pre)
        x = self.pool4(x).flatten(1)
        logits = self.classifier(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


def vgg8(num_classes=100):
    return VGG(CONFIGS['vgg8'], num_classes)


def vgg11(num_classes=100):
    return VGG(CONFIGS['vgg11'], num_classes)


def vgg13(num_classes=100):
    return VGG(CONFIGS['vgg13'], num_classes)


def vgg16(num_classes=100):
    return VGG(CONFIGS['vgg16'], num_classes)


def vgg19(num_classes=100):
    return VGG(CONFIGS['vgg19'], num_classes)
