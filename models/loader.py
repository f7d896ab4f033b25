"""The one checkpoint loader every script uses: safe unpickling, published formats, clear errors."""
import argparse
import functools
import os
import pickle
import re

import torch
from torch.overrides import TorchFunctionMode

from models import zoo
from helper.errors import UsageError


_UNSAFE_GLOBAL = re.compile(r'Unsupported global: GLOBAL (\S+)')


def _torch_load(path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        # legacy checkpoints carry the training options as an argparse.Namespace: allow only that
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)


def read_state_dict(path):
    """(state_dict, meta) from a {'model': sd, ...} checkpoint or a bare state dict."""
    if not os.path.isfile(path):
        raise UsageError(f'checkpoint not found: {path}')
    try:
        obj = _torch_load(path)
    except PermissionError as e:
        raise UsageError(f'cannot read checkpoint {path}: {e.strerror}') from None
    except Exception as e:  # torch's messages span many lines and suggest weights_only=False
        unsafe = _UNSAFE_GLOBAL.search(str(e))
        reason = (f'it holds a Python object ({unsafe.group(1)}) that is never unpickled, for '
                  'safety: only tensors, plain values and argparse.Namespace are loaded' if unsafe
                  else 'not a PyTorch checkpoint, or the file is truncated or corrupted')
        raise UsageError(f'cannot read checkpoint {path}: {reason}') from None
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        meta = {k: v for k, v in obj.items() if k != 'model'}
        obj = obj['model']
    if not (isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values())):
        raise UsageError(f'{path} is not a model checkpoint (expected a state dict or a dict '
                         f"with a 'model' state dict)")
    prefix = 'module.'  # saved from a DataParallel / DDP wrapper
    state_dict = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in obj.items()}
    return state_dict, meta


def _shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _num_classes(state_dict):
    # every zoo model ends with its classifier: the last 1-D entry is its bias
    biases = [v for v in state_dict.values() if v.dim() == 1]
    return biases[-1].shape[0] if biases else 100


class _SkipInit(TorchFunctionMode):
    """Shapes-only builds skip weight init (meta-device normal_ imports torch._dynamo: seconds)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, '__module__', None) == 'torch.nn.init' or func in (
                torch.Tensor.normal_, torch.Tensor.uniform_):
            return args[0] if args else kwargs['tensor']
        return func(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _zoo_shapes(name, num_classes, block_depth):
    with torch.device('meta'), _SkipInit():  # no memory, no init
        return _shapes(zoo.build_model(name, num_classes, block_depth).state_dict())


def state_dict_shapes(name, num_classes=100, block_depth=None):
    """{key: shape} of a zoo model in state_dict order, built without memory or initialisation."""
    depth = zoo.parse_block_depth(name, block_depth)
    return dict(_zoo_shapes(name, num_classes, None if depth is None else tuple(depth)))


def guess_architecture(state_dict):
    """The fixed-depth zoo name whose keys and shapes are exactly those of state_dict, or None."""
    wanted = _shapes(state_dict)
    num_classes = _num_classes(state_dict)
    return next((name for name in zoo.FIXED_DEPTH
                 if _zoo_shapes(name, num_classes, None) == wanted), None)


def name_from_path(path):
    """RepDistiller's rule: the folder name split on '_' (resnet110_vanilla -> resnet110,
    wrn_40_2_vanilla -> wrn_40_2), less our block_depth suffix (myresnet20-3-7-2_cifar100_...);
    None when that is not a zoo name."""
    from .pretrained import name_from_file  # torchvision's file names: resnet34-b627a593.pth
    if name_from_file(path):
        return name_from_file(path)
    parts = os.path.basename(os.path.dirname(os.path.abspath(path))).split('_')
    name = '_'.join(parts[:3]) if parts[0] in ('wrn', 'mywrn') else parts[0]
    if len(parts) > 1 and parts[1].split('-')[0] == 'imagenet':  # resnet34_imagenet_imagenet_lr_...
        name = '_'.join(parts[:2])
    name = re.sub(r'(-\d+)+$', '', name)
    return name if name in zoo.model_dict else None


def _mismatch(state_dict, model_sd):
    """Short description of how two state dicts differ, or '' when they agree."""
    missing = [k for k in model_sd if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_sd]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys (first {missing[0]!r})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys (first {unexpected[0]!r})')
    for k, v in model_sd.items():
        if k in state_dict and state_dict[k].shape != v.shape:
            problems.append(f'{k!r} has shape {list(state_dict[k].shape)} in the checkpoint, '
                            f'{list(v.shape)} in the model')
            break
    return '; '.join(problems)


def _width_of(state_dict, name, num_classes):
    """ResNet50 and ResNet50_full share a folder name (ResNet50_vanilla holds RepDistiller's
    full-width teacher): take the width whose keys and shapes the weights have."""
    other = zoo.other_width(name)
    wanted = _shapes(state_dict)
    if other and _zoo_shapes(name, num_classes, None) != wanted and \
            _zoo_shapes(other, num_classes, None) == wanted:
        return other
    return name


def saved_block_depth(meta):
    """The block_depth a checkpoint of ours was trained with (saved with its options), or None."""
    if meta.get('block_depth') is not None:
        return list(meta['block_depth'])
    options = meta.get('opt')
    depth = options.get('block_depth') if isinstance(options, dict) else getattr(options, 'block_depth', None)
    return list(depth) if depth is not None else None


def load_model(path, name=None, num_classes=100, block_depth=None):
    """(model, meta): builds `name` (default: from the checkpoint's folder), loads it strictly.
    A variable-depth model takes its block_depth from the checkpoint unless one is given."""
    state_dict, meta = read_state_dict(path)
    if name is None:
        name = name_from_path(path)
        if name is None:
            guess = guess_architecture(state_dict)
            hint = f' (the weights match {guess})' if guess else ''
            raise UsageError(f'cannot tell the architecture of {path} from its folder name; '
                             f'give the model name{hint}')
    if block_depth is None and zoo.is_variable_depth(name):
        block_depth = saved_block_depth(meta)
    name = _width_of(state_dict, name, num_classes)
    model = zoo.build_model(name, num_classes, block_depth)
    problems = _mismatch(state_dict, model.state_dict())
    if problems:
        guess = guess_architecture(state_dict)
        verdict = (f'the weights match {guess}' if guess and guess != name else
                   'the weights match no fixed-depth architecture in the zoo' if not guess else '')
        raise UsageError(f'checkpoint {path} does not fit {name}: {problems}'
                         + (f'; {verdict}' if verdict else ''))
    model.load_state_dict(state_dict, strict=True)
    return model, meta
