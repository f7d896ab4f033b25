"""Small shared utilities: devices, seeding and RNG state, the LR schedule."""
import os
import random

import numpy as np
import torch

from helper.errors import UsageError


def pick_device(name='auto'):
    """auto tries cuda, then mps, then cpu; an explicit device that is absent is a usage error."""
    cuda_ok = torch.cuda.is_available()
    mps_ok = getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available()
    if name == 'auto':
        name = 'cuda' if cuda_ok else 'mps' if mps_ok else 'cpu'
    if name == 'cuda' and not cuda_ok:
        raise UsageError('--device cuda was requested but no CUDA device is available '
                         '(use --device cpu, or check CUDA_VISIBLE_DEVICES and the driver)')
    if name == 'mps' and not mps_ok:
        raise UsageError('--device mps was requested but MPS is not available on this machine')
    if name == 'cuda':
        local_rank = int(os.environ.get('LOCAL_RANK', 0))
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device(name)


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(plain=True):
    """The global RNG states; plain: as lists and tensors, which a weights_only checkpoint holds
    (co-training's turns keep them as they are: cheaper)."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return _plain(state) if plain else state


def set_rng_state(state):
    random.setstate(_tuplify(state['python']))
    np_state = state['numpy']
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])


def _plain(obj):
    # RNG states hold numpy arrays and tuples: turn them into lists so weights_only loading works
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.astype(np.int64))
    if isinstance(obj, (tuple, list)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _tuplify(obj):
    if isinstance(obj, list):
        return tuple(_tuplify(x) for x in obj)
    return obj


def learning_rate_at(epoch, opt):
    """Published step schedule: lr * rate^(number of milestones passed), epochs counted from 1."""
    passed = sum(epoch > m for m in opt.lr_decay_epochs)
    return opt.learning_rate * opt.lr_decay_rate ** passed


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr
