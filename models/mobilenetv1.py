"""MobileNetV1 for ImageNet as mdistiller defines it (its parameter names: model.<i>..., fc), with
the zoo's forward contract. Stages end where mdistiller takes its 4 features: after layers 3, 5,
11 and 13 (128, 256, 512 and 1024 channels at 56, 28, 14 and 7 pixels for a 224x224 input)."""
import torch.nn as nn
import torch.nn.functional as F


def _conv_bn(inp, oup, stride):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


def _conv_dw(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


# (first, last) layer of each stage in self.model; layer 0 is the stem
STAGES = ((1, 3), (4, 5), (6, 11), (12, 13))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                  (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
        # mdistiller ends with AvgPool2d(7); the adaptive pool is the same at 224x224 and also
        # takes the small inputs of the tests
        self.model = nn.Sequential(_conv_bn(3, 32, 2), *[_conv_dw(*w) for w in widths],
                                   nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(1024, num_classes)

    def stages(self):
        return [self.model[first:last + 1] for first, last in STAGES]

    def get_feat_modules(self):
        return nn.ModuleList([self.model[:STAGES[-1][1] + 1]])

    def get_bn_before_relu(self):
        return [self.model[last][-2] for _, last in STAGES]

    def forward(self, x, is_feat=False, preact=False):
        stem_pre = self.model[0][:-1](x)
        x = F.relu(stem_pre)
        feats, pres = [x], [stem_pre]
        for first, last in STAGES:
            pre = self.model[last][:-1](self.model[first:last](x))
            x = F.relu(pre)
            feats.append(x)
            pres.append(pre)
        x = self.model[-1](x).flatten(1)
        logits = self.fc(x)
        if not is_feat:
            return logits
        return (pres if preact else feats) + [x], logits


def mobilenetv1_imagenet(num_classes=1000):
    return MobileNetV1(num_classes)
