"""A run's identity: every option that changes its result, the teacher checkpoint by content.

Run folders keep their readable name (helper.engine.options.run_name) and end in `_id-<hash>` of the
identity, so two runs that differ in any such option never share a folder, a checkpoint or a
"finished" status. A folder named before the hash existed is still used when its summary.json
records the same options; otherwise it is left as it is.
"""
import hashlib
import json
import os

from helper.engine.options import RESULT_OPTIONS, options_dict

# amp is resolved by device under --fast (the same command names it differently per machine);
# the resume check still compares it.
IDENTITY_OPTIONS = tuple(k for k in RESULT_OPTIONS if k != 'amp')
# Options added after runs were recorded without them, with the value those runs had.
ADDED_DEFAULTS = {'train_per_class': None}
HASH_CHARS = 8

_digests = {}


def teacher_digest(path):
    """The first 12 hex digits of the checkpoint's SHA-256 (cached by size and mtime); for a name
    such as torchvision:resnet18, or a file not there yet, the text itself."""
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return str(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        _digests[key] = h.hexdigest()[:12]
    return _digests[key]


def identity(opt, kind):
    """{option: value} of everything that makes the run's result; a drawn seed is left out (the
    run records it, and --resume without --seed must find the run)."""
    values = options_dict(opt)
    out = {k: values.get(k, ADDED_DEFAULTS.get(k)) for k in IDENTITY_OPTIONS
           if k in values or k in ADDED_DEFAULTS}
    if getattr(opt, 'seed_auto', False):
        out.pop('seed', None)
    out['kind'] = kind
    if kind == 'student':
        out['teacher_sha256'] = teacher_digest(opt.path_t)
    return out


def records_this_run(saved, opt):
    """Whether saved, the options an older folder without the hash recorded, are those of the
    run opt describes (a drawn seed aside)."""
    keys = [k for k in IDENTITY_OPTIONS if not (k == 'seed' and getattr(opt, 'seed_auto', False))]
    return isinstance(saved, dict) and first_difference(saved, options_dict(opt), keys) is None


def identity_hash(ident):
    text = json.dumps(ident, sort_keys=True, separators=(',', ':'))
    return hashlib.sha1(text.encode()).hexdigest()[:HASH_CHARS]


def folder_name(readable, ident):
    return f'{readable}_id-{identity_hash(ident)}'


def show(value):
    if isinstance(value, (list, tuple)):
        return ','.join(map(str, value)) or 'none'
    return str(value)


def first_difference(saved, wanted, keys, required=()):
    """'epochs 1 ≠ 240': the first of keys whose value in saved differs from wanted; None when
    they agree. A key saved lacks (an older version) is skipped, unless it is required."""
    for key in keys:
        if key not in wanted:
            continue
        if key not in saved and key in ADDED_DEFAULTS:
            have = ADDED_DEFAULTS[key]
        elif key not in saved:
            if key in required:
                return f'{key} not recorded'
            continue
        else:
            have = saved[key]
        if _norm(have) != _norm(wanted[key]):
            return f'{key} {show(have)} ≠ {show(wanted[key])}'
    return None


def _norm(value):
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
