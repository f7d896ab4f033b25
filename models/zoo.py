"""The registry: every architecture name the scripts accept, its constructor and its depth."""

from helper.errors import UsageError, unknown_name

from . import resnet, resnet_imagenet, resnetv2, wrn
from .ShuffleNetv1 import ShuffleV1
from .ShuffleNetv2 import ShuffleV2
from .densenet import densenet40, densenet100
from .mobilenetv1 import mobilenetv1_imagenet
from .mobilenetv2 import mobile_half
from .resnet import (myresnet8, myresnet14, myresnet20, myresnet32, myresnet44, myresnet56,
                     myresnet110, myresnet8x4, myresnet32x4, resnet8, resnet14, resnet20,
                     resnet32, resnet44, resnet56, resnet110, resnet8x4, resnet32x4)
from .resnet_imagenet import (myresnet18_imagenet, myresnet34_imagenet, myresnet50_imagenet,
                              resnet18_imagenet, resnet34_imagenet, resnet50_imagenet)
from .resnetv2 import (ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNet18_full,
                       ResNet34_full, ResNet50_full, ResNet101_full, ResNet152_full, myResNet18,
                       myResNet34, myResNet50, myResNet101, myResNet152)
from .resnext import (RESNEXT_BASE_DEPTH, myresnext29, myresnext101, resnext29,
                      resnext101)
from .vgg import vgg8, vgg11, vgg13, vgg16, vgg19
from .wrn import (mywrn_16_1, mywrn_16_2, mywrn_40_1, mywrn_40_2, wrn_10_2, wrn_16_1,
                  wrn_16_2, wrn_40_1, wrn_40_2)

FIXED_DEPTH = {
    'resnet8': resnet8, 'resnet14': resnet14, 'resnet20': resnet20, 'resnet32': resnet32,
    'resnet44': resnet44, 'resnet56': resnet56, 'resnet110': resnet110,
    'resnet8x4': resnet8x4, 'resnet32x4': resnet32x4,
    'ResNet18': ResNet18, 'ResNet34': ResNet34, 'ResNet50': ResNet50,
    'ResNet101': ResNet101, 'ResNet152': ResNet152,
    'ResNet18_full': ResNet18_full, 'ResNet34_full': ResNet34_full, 'ResNet50_full': ResNet50_full,
    'ResNet101_full': ResNet101_full, 'ResNet152_full': ResNet152_full,
    'wrn_10_2': wrn_10_2, 'wrn_16_1': wrn_16_1, 'wrn_16_2': wrn_16_2,
    'wrn_40_1': wrn_40_1, 'wrn_40_2': wrn_40_2,
    'vgg8': vgg8, 'vgg11': vgg11, 'vgg13': vgg13, 'vgg16': vgg16, 'vgg19': vgg19,
    'MobileNetV2': mobile_half, 'ShuffleV1': ShuffleV1, 'ShuffleV2': ShuffleV2,
    'densenet40': densenet40, 'densenet100': densenet100,
    'resnext29': resnext29, 'resnext101': resnext101,
    # ImageNet networks (224x224 inputs, torchvision's stem); the names above are CIFAR's
    'resnet18_imagenet': resnet18_imagenet, 'resnet34_imagenet': resnet34_imagenet,
    'resnet50_imagenet': resnet50_imagenet, 'mobilenetv1_imagenet': mobilenetv1_imagenet,
}
# each my* name is its base name (without 'my') with `block_depth` blocks per stage
VARIABLE_DEPTH = {
    'myresnet8': myresnet8, 'myresnet14': myresnet14, 'myresnet20': myresnet20,
    'myresnet32': myresnet32, 'myresnet44': myresnet44, 'myresnet56': myresnet56,
    'myresnet110': myresnet110, 'myresnet8x4': myresnet8x4, 'myresnet32x4': myresnet32x4,
    'mywrn_16_1': mywrn_16_1, 'mywrn_16_2': mywrn_16_2,
    'mywrn_40_1': mywrn_40_1, 'mywrn_40_2': mywrn_40_2,
    'myResNet18': myResNet18, 'myResNet34': myResNet34, 'myResNet50': myResNet50,
    'myResNet101': myResNet101, 'myResNet152': myResNet152,
    'myresnext29': myresnext29, 'myresnext101': myresnext101,
    'myresnet18_imagenet': myresnet18_imagenet, 'myresnet34_imagenet': myresnet34_imagenet,
    'myresnet50_imagenet': myresnet50_imagenet,
}
IMAGENET_MODELS = frozenset(n for n in (*FIXED_DEPTH, *VARIABLE_DEPTH) if n.endswith('_imagenet'))
model_dict = {**FIXED_DEPTH, **VARIABLE_DEPTH}

_BASE_DEPTH = {**resnet.BASE_DEPTH, **resnetv2.BASE_DEPTH, **wrn.BASE_DEPTH,
               **RESNEXT_BASE_DEPTH, **resnet_imagenet.BASE_DEPTH}


def check_name(name):
    if name not in model_dict:
        raise unknown_name('model', name, model_dict, n=5, cutoff=0.5)


def base_name(name):
    """The fixed-depth name a my* name is built on (myresnet20 -> resnet20)."""
    return name[2:] if name in VARIABLE_DEPTH else name


def other_width(name):
    """The other width of a ResNet18-152 name (ResNet50 <-> ResNet50_full), else None: a
    checkpoint's weights tell which one it is."""
    full = resnetv2.FULL_WIDTH
    return full.get(name) or next((half for half, f in full.items() if f == name), None)


def is_variable_depth(name):
    return name in VARIABLE_DEPTH


def base_depth(name):
    """Per-stage block counts of the named model's base; None for families without stages."""
    check_name(name)
    depth = _BASE_DEPTH.get(base_name(name))
    return None if depth is None else list(depth)


def _to_count(item, text):
    if isinstance(item, str) and item.strip().lstrip('+-').isdigit():
        return int(item)
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    hint = f' (separate the counts with commas: {",".join(text.split())})' if len(str(text).split()) > 1 else ''
    raise UsageError(f'--block_depth {text}: {str(item).strip()!r} is not a whole number{hint}')


def parse_block_depth(name, value):
    """Validate a block_depth ("3,7,2" or a list) for `name`; returns a list of ints or None."""
    if value is None:
        return None
    check_name(name)
    if isinstance(value, str):
        items, text = value.split(','), value
    else:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        text = ','.join(map(str, items))
    if not is_variable_depth(name):
        hint = f' (use my{name} to change its depth)' if f'my{name}' in VARIABLE_DEPTH else ''
        raise UsageError(f'--block_depth {text} was given, but {name} has a fixed depth{hint}')
    expected = base_depth(name)
    counts = [_to_count(item, text) for item in items]
    example = ','.join(map(str, expected))
    if len(counts) != len(expected):
        raise UsageError(f'--block_depth {text}: {name} needs {len(expected)} block counts, '
                         f'one per stage (e.g. {example}), got {len(counts)}')
    if min(counts) < 1:
        raise UsageError(f'--block_depth {text}: every stage needs at least 1 block')
    return counts


def build_model(name, num_classes=100, block_depth=None):
    """The named network; block_depth is checked before anything is built."""
    check_name(name)
    depth = parse_block_depth(name, block_depth)
    if is_variable_depth(name):
        return model_dict[name](num_classes=num_classes, block_depth=depth)
    return model_dict[name](num_classes=num_classes)
