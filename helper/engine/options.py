"""Command-line options of train_teacher.py, train_student.py and search.py.

Flag names and defaults are the published ones (RepDistiller, CRD-EMKD); new flags are additive.
Choices are checked against the registries (models, distiller_zoo, dataset), never a hand list.
"""
import argparse
import os
import random

from distiller_zoo import METHODS, method_options
from helper.errors import UsageError, teacher_missing, unknown_name

MOBILE_STUDENTS = ('MobileNetV2', 'ShuffleV1', 'ShuffleV2')  # published lr 0.01


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one UsageError line instead of usage + exit."""

    def error(self, message):
        raise UsageError(message)


def _add_common(p):
    g = p.add_argument_group('logging and checkpoints')
    g.add_argument('--print_freq', type=int, default=100, help='print every N iterations')
    g.add_argument('--tb_freq', type=int, default=500, help='tensorboard every N iterations')
    g.add_argument('--save_freq', type=int, default=40, help='ckpt_epoch_N.pth every N epochs')
    g.add_argument('--save_root', default='./save', help='runs go to SAVE_ROOT/{models,student_model}')
    g = p.add_argument_group('loading and schedule')
    g.add_argument('--batch_size', type=int, default=64, help='per process (per GPU under torchrun)')
    g.add_argument('--num_workers', type=int, default=None,
                   help='default: min(8, the CPUs this process may use: affinity, SLURM_CPUS_PER_TASK)')
    g.add_argument('--epochs', type=int, default=240)
    g.add_argument('--dataset', default='cifar100', help='cifar100, cifar10, tiny_imagenet, imagenet, digits')
    g.add_argument('--data_folder', default='./data')
    g.add_argument('--train_per_class', type=int, default=None, metavar='N',
                   help='train on N labelled images per class (the same class-balanced subset in every '
                        'run: drawn once with a fixed seed); default: the whole training set')
    g.add_argument('--tiny_imagenet_transform', default='emkd', choices=['emkd', 'crop'],
                   help='emkd: CRD-EMKD\'s (flip, rotation, resized crop with p=0.8; mean/std 0.5); '
                        'crop: random crop with 8 px padding, flip, ImageNet mean/std')
    g.add_argument('--imagenet_transform', default='standard', choices=['standard', 'emkd'],
                   help='standard: torchvision\'s 224 px; emkd: CRD-EMKD\'s (train RandomCrop(64, pad 4), '
                        'test Resize(256)+CenterCrop(128))')
    g = p.add_argument_group('optimizer')
    g.add_argument('--learning_rate', type=float, default=None,
                   help='default 0.05; 0.01 for MobileNetV2/ShuffleV1/ShuffleV2 (published)')
    g.add_argument('--lr_decay_epochs', default='150,180,210', help='comma-separated epochs')
    g.add_argument('--lr_decay_rate', type=float, default=0.1)
    g.add_argument('--weight_decay', type=float, default=5e-4)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--optimizer', default='sgd', choices=['sgd', 'dot'],
                   help='dot: separate momenta for the task (CE) and distillation gradients (DOT)')
    g.add_argument('--dot_delta', type=float, default=None,
                   help='DOT: task momentum is momentum - delta, distillation momentum + delta (default 0.075)')
    g.add_argument('--scale_lr', action='store_true',
                   help='under torchrun, multiply the learning rate by the number of processes')
    g = p.add_argument_group('run control')
    g.add_argument('--seed', type=int, default=None, help='seed everything (default: a random seed, recorded)')
    g.add_argument('--device', default='auto', choices=['auto', 'cuda', 'mps', 'cpu'])
    g.add_argument('--resume', action='store_true', help='continue the run in its folder')
    g.add_argument('--extend', type=int, default=None, metavar='EPOCHS',
                   help='continue the run that these options name (with its --epochs) to EPOCHS epochs, '
                        'in its folder; recorded in its summary')
    g.add_argument('--test', type=int, default=0, choices=[0, 1], help='1: only evaluate the saved model')
    g.add_argument('--dry_run', action='store_true',
                   help='check everything short of training (options, run folder, data, teacher, shapes by one '
                        'forward), print the plan, write nothing')
    g = p.add_argument_group('speed (docs/fast-path.md)')
    g.add_argument('--data_on_device', action='store_true', help='keep the train set on the device, augment there (ImageNet: decode the JPEGs there)')
    g.add_argument('--amp', action='store_true', help='bf16 autocast where supported, else fp16 + GradScaler')
    g.add_argument('--channels_last', action='store_true')
    g.add_argument('--compile', action='store_true', help='torch.compile student and teacher')
    g.add_argument('--fast', action='store_true', help='everything above that the device supports')
    g.add_argument('--teacher_batch', type=int, default=None,
                   help='one teacher forward per K batches (same outputs up to rounding; default: 8 with '
                        '--fast on CUDA, else 1)')
    g.add_argument('--step_graph', action='store_true',
                   help='CUDA: capture the whole training step (forward, backward, optimizer) in one CUDA graph')
    g.add_argument('--sync_bn', action='store_true', help='SyncBatchNorm under torchrun')


def _model_names():
    """The model registry's names, for help texts (my* names take --block_depth)."""
    import models
    return ', '.join(sorted(models.model_dict, key=str.lower))


def teacher_parser():
    p = Parser(description='Train a teacher (or a student from scratch) with cross-entropy.')
    p.add_argument('--model', default='resnet110', help=f'default resnet110; one of: {_model_names()}')
    p.add_argument('--block_depth', default=None, help='blocks per stage for my* models, e.g. 3,7,2')
    p.add_argument('-t', '--trial', default='0', help='experiment id')
    _add_common(p)
    return p


def add_student_args(p):
    g = p.add_argument_group('models')
    g.add_argument('--model_s', default='resnet8', help=f'student, default resnet8; one of: {_model_names()}')
    g.add_argument('--model_t', default=None, help='default: read from --path_t\'s folder name')
    g.add_argument('--path_t', default=None,
                   help='teacher checkpoint, or torchvision:resnet18|34|50 (ImageNet)')
    g.add_argument('--block_depth', default=None, help='student blocks per stage for my* models, e.g. 3,7,2')
    g.add_argument('--trial', default='1', help='experiment id')
    g = p.add_argument_group('distillation')
    g.add_argument('--distill', default='kd', metavar='METHOD', help='the method (default kd): ' + ', '.join(
        f'{n} ({", ".join(c.paper.split(", ")[:2])})' for n, c in METHODS.items()))
    g.add_argument('--init_epochs', type=int, default=30, help='init stage of abound, factor, fsp')
    g.add_argument('--mc', type=int, default=0, choices=[0, 1], help='1: milestone checking')
    g.add_argument('--mc_weight', type=float, default=0.001)
    g.add_argument('-r', '--gamma', type=float, default=None,
                   help='weight of cross-entropy; default 1 (published), or the method\'s published '
                        'value when -a and -b are omitted too')
    g.add_argument('-a', '--alpha', type=float, default=None,
                   help='weight of the KD loss; default: the method\'s published value')
    g.add_argument('-b', '--beta', type=float, default=None,
                   help='weight of the method loss; default: the method\'s published value')
    g.add_argument('--kd_T', type=float, default=None,
                   help='temperature of KD and MC (default 4; 2 with --logit_stand, its base temperature)')
    for i in range(1, 5):
        g.add_argument(f'--B{i}_weight', type=float, default=1.0,
                       help=f'MC weight of stage {i} of a fixed-depth student, default 1 '
                            '(my* students: from --block_depth)')
    g.add_argument('--feat_dim', type=int, default=128, help='CRD/CC embedding size')
    g.add_argument('--logit_stand', action='store_true',
                   help='logit standardization on kd or dkd; --kd_T is then the base temperature')
    for cls in METHODS.values():   # each method's own options (omitted: the published values)
        if cls.options:
            g = p.add_argument_group(f'--distill {cls.name} ({cls.label})')
            for option in cls.options:
                option.add_to(g)
    _add_common(p)
    return p


def student_parser():
    return add_student_args(Parser(description='Distill a student from a teacher.'))


def parse_int_list(text, flag):
    try:
        values = [int(v) for v in str(text).split(',') if v.strip() != '']
    except ValueError:
        raise UsageError(f'{flag} must be comma-separated integers, got {text!r}') from None
    return values


def _check_name(kind, value, names, flag):
    if value not in names:
        raise unknown_name(flag, value, sorted(names))


class Options(argparse.Namespace):
    """Options after finalize: checked, completed and read-only; replace() makes a changed copy.

    vars() holds the options the run uses (what the user asked for, defaults resolved). Kept beside
    them: `requested`, the options exactly as given (None where omitted), and seed_auto, whether
    finalize drew the seed (run state: a resume adopts the run's seed)."""

    __slots__ = ('seed_auto', 'requested')

    def __setattr__(self, name, value):
        raise AttributeError(f'options are read-only after finalize; use replace({name}=...)')

    def __delattr__(self, name):
        raise AttributeError('options are read-only after finalize')

    @classmethod
    def frozen(cls, values, seed_auto=False, requested=None):
        out = cls.__new__(cls)
        out.__dict__.update(values)
        object.__setattr__(out, 'seed_auto', seed_auto)
        object.__setattr__(out, 'requested', dict(requested or {}))
        return out

    def replace(self, **changes):
        """A copy with values the run resolved; what was requested stays."""
        return Options.frozen({**vars(self), **changes}, self.seed_auto, self.requested)

    def request(self, **changes):
        """A copy as if these values had been given too (a search candidate's own flags)."""
        return Options.frozen({**vars(self), **changes}, self.seed_auto,
                              {**self.requested, **options_dict(argparse.Namespace(**changes))})

    def __reduce__(self):  # pickle and copy without __setattr__
        return Options.frozen, (dict(vars(self)), self.seed_auto, self.requested)


def finalize(opt, kind):
    """Checked and completed options (a read-only Options); opt itself is not changed. kind is
    'teacher' or 'student'."""
    if isinstance(opt, Options):
        return opt
    requested = options_dict(opt)
    opt = argparse.Namespace(**vars(opt))
    seed_auto = opt.seed is None
    _complete(opt, kind)
    return Options.frozen(vars(opt), seed_auto, requested)


def _complete(opt, kind):
    import models
    import dataset
    from dataset import default_num_workers

    _check_name('dataset', opt.dataset, dataset.DATASETS, '--dataset')
    model_flag, model_name = ('--model', opt.model) if kind == 'teacher' else ('--model_s', opt.model_s)
    _check_name('model', model_name, models.model_dict, model_flag)
    opt.block_depth = models.parse_block_depth(model_name, opt.block_depth)
    for flag in ('epochs', 'batch_size', 'print_freq', 'save_freq', 'tb_freq'):
        if getattr(opt, flag) <= 0:
            raise UsageError(f'--{flag} must be positive, got {getattr(opt, flag)}')
    if isinstance(opt.lr_decay_epochs, str):
        opt.lr_decay_epochs = parse_int_list(opt.lr_decay_epochs, '--lr_decay_epochs')
    if any(e <= 0 for e in opt.lr_decay_epochs) or sorted(opt.lr_decay_epochs) != list(opt.lr_decay_epochs):
        raise UsageError(f'--lr_decay_epochs must be increasing positive epochs, got {opt.lr_decay_epochs}')
    if opt.learning_rate is None:
        opt.learning_rate = 0.01 if model_name in MOBILE_STUDENTS else 0.05
    if opt.learning_rate <= 0:
        raise UsageError(f'--learning_rate must be positive, got {opt.learning_rate}')
    if opt.train_per_class is not None and opt.train_per_class <= 0:
        raise UsageError(f'--train_per_class must be positive, got {opt.train_per_class}')
    if opt.extend is not None and opt.extend <= opt.epochs:
        raise UsageError(f'--extend {opt.extend} must be more than --epochs {opt.epochs} (the run to continue)')
    if opt.num_workers is None:
        opt.num_workers = default_num_workers()
    if opt.num_workers < 0:
        raise UsageError(f'--num_workers must be >= 0, got {opt.num_workers}')
    if opt.seed is None:
        # recorded so that --resume replays the same data order; a resume adopts the run's seed
        opt.seed = random.SystemRandom().randrange(2**31)
    opt.trial = str(opt.trial)
    if any(c in opt.trial for c in ('/', '\\', os.sep, '\0')):  # it becomes part of a folder name
        raise UsageError(f'--trial {opt.trial!r}: no path separators (it names the run folder); use letters, '
                         f'digits, - or _')
    if kind == 'student':
        _finalize_student(opt, models)
    _check_dot(opt, kind)


def _check_dot(opt, kind):
    if opt.optimizer != 'dot':
        if opt.dot_delta is not None:
            raise UsageError('--dot_delta is a flag of --optimizer dot')
        return
    if opt.dot_delta is None:
        opt.dot_delta = 0.075   # mdistiller's CIFAR-100 and Tiny-ImageNet configs (ImageNet: 0.09)
    if kind == 'teacher' or (opt.alpha == 0 and opt.beta == 0):
        what = 'a teacher trains CE alone' if kind == 'teacher' else f'-a and -b are 0 for {opt.distill}'
        raise UsageError(f'--optimizer dot splits the distillation gradient from the task (CE) gradient, '
                         f'but {what}: there is no distillation term')
    if not 0 <= opt.dot_delta <= opt.momentum:
        raise UsageError(f'--dot_delta must be between 0 and --momentum ({opt.momentum:g}), got {opt.dot_delta:g}')


def _finalize_student(opt, models):
    from models import pretrained
    _check_name('distill', opt.distill, METHODS, '--distill')
    if opt.path_t is None:
        raise UsageError('--path_t is required: the teacher checkpoint, e.g. '
                         './save/models/resnet110_vanilla/ckpt_epoch_240.pth')
    if opt.model_t is None and pretrained.is_torchvision(opt.path_t):
        opt.model_t = pretrained.model_name(opt.path_t)
    if opt.model_t is None:
        opt.model_t = models.name_from_path(opt.path_t)
        if opt.model_t is None:
            if not os.path.isfile(opt.path_t):  # the real problem, not the folder name
                folder = ' (a folder: give the .pth file in it)' if os.path.isdir(opt.path_t) else ''
                raise teacher_missing(opt.path_t, folder)
            raise UsageError(f'cannot tell the teacher architecture from {opt.path_t!r}; pass --model_t')
    _check_name('model', opt.model_t, models.model_dict, '--model_t')
    if opt.init_epochs < 0:
        raise UsageError(f'--init_epochs must be >= 0, got {opt.init_epochs}')
    method = METHODS[opt.distill]
    _check_method_flags(opt, method)
    if opt.kd_T is None:
        from distiller_zoo.logit_stand import BASE_TEMP
        opt.kd_T = BASE_TEMP if opt.logit_stand else 4.0
    resolve_loss_weights(opt, method)
    if opt.kd_T <= 0:
        raise UsageError(f'--kd_T must be positive, got {opt.kd_T}')
    for _, option in method_options():
        option.validate(getattr(opt, option.name))
    from distiller_zoo.mc import stage_weight_flags
    stage_weight_flags(opt)  # checked before anything is built


def resolve_loss_weights(opt, method):
    """-r defaults to 1 as published (`--distill kd -a 0 -b 0.8` trains 1*CE); only a command that
    omits all of -r/-a/-b takes the method's published triple. An omitted -a/-b (no published
    default: the published code crashed) takes the method's published value, and omitted method
    flags take theirs."""
    if opt.gamma is None and (opt.alpha is not None or opt.beta is not None):
        opt.gamma = 1.0
    method.complete_options(opt)


def _check_method_flags(opt, method):
    """A method's own options, or --logit_stand, given with a method that ignores them."""
    if opt.logit_stand and not method.supports_logit_stand:
        ok = ' or '.join(n for n, c in METHODS.items() if c.supports_logit_stand)
        raise UsageError(f'--logit_stand works with --distill {ok} (the methods it was published for), '
                         f'not {opt.distill}')
    for other, option in method_options():
        if other is not method and option.given(opt):
            raise UsageError(f'--{option.name} is a flag of --distill {other.name}, not {opt.distill}')


def options_argv(opt, parser):
    """A command line that parser reads back as opt: every flag whose value is not the default."""
    argv = []
    for action in parser._actions:
        if not action.option_strings or action.dest == 'help' or not hasattr(opt, action.dest):
            continue
        value = getattr(opt, action.dest)
        if value == action.default or value is None:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(flag)
        elif isinstance(value, (list, tuple)):  # '=' keeps an empty list a value
            argv.append(f'{flag}=' + ','.join(map(str, value)))
        else:
            argv.append(f'{flag}={value}')
    return argv


def options_dict(opt):
    """Options as plain data (for checkpoints, summary.json, weights_only loading)."""
    out = {}
    for k, v in sorted(vars(opt).items()):
        if isinstance(v, (tuple, list)):
            v = list(v)
        if v is None or isinstance(v, (bool, int, float, str, list)):
            out[k] = v
    return out


def _fmt(x):
    return f'{x:g}' if isinstance(x, float) else str(x)


def run_name(opt, kind):
    """Folder name: teacher, student, block_depth, method, MC, weights, trial; no ':' characters."""
    if kind == 'teacher':
        model = opt.model + (('-' + '-'.join(map(str, opt.block_depth))) if opt.block_depth else '')
        return f'{model}_{opt.dataset}_lr_{_fmt(opt.learning_rate)}_decay_{_fmt(opt.weight_decay)}_trial_{opt.trial}'
    student = opt.model_s + (('-' + '-'.join(map(str, opt.block_depth))) if opt.block_depth else '')
    mc = f'_mc-{_fmt(opt.mc_weight)}' if opt.mc else ''
    if getattr(opt, 'optimizer', 'sgd') == 'dot':
        mc += f'_dot-{_fmt(opt.dot_delta)}'
    b_weights = [getattr(opt, f'B{i}_weight') for i in range(1, 5)]
    if opt.mc and any(w != 1.0 for w in b_weights):  # only non-default stage weights change the name
        mc += '_B-' + '-'.join(_fmt(float(w)) for w in b_weights)
    return (f'S-{student}_T-{opt.model_t}_{opt.dataset}_{opt.distill}{method_tag(opt)}{mc}'
            f'_r-{_fmt(opt.gamma)}_a-{_fmt(opt.alpha)}_b-{_fmt(opt.beta)}_{opt.trial}')


def method_tag(opt):
    """The method's own options that have a tag (e.g. -b8-T4 for DKD) and -ls for --logit_stand,
    for the folder name."""
    tag = ''.join(f'-{o.tag}{_fmt(getattr(opt, o.name))}' for o in METHODS[opt.distill].options
                  if o.tag and getattr(opt, o.name) is not None)
    return tag + ('-ls' if opt.logit_stand else '')


# Options whose change makes a checkpoint belong to a different experiment (checked on --resume):
# the general ones, then every method's own options that change results.
RESULT_OPTIONS = ('model', 'model_s', 'model_t', 'block_depth', 'distill', 'mc', 'mc_weight', 'gamma',
                  'alpha', 'beta', 'kd_T', 'feat_dim',
                  'dataset', 'batch_size', 'epochs', 'init_epochs', 'learning_rate', 'lr_decay_epochs',
                  'lr_decay_rate', 'weight_decay', 'momentum', 'amp', 'seed',
                  'B1_weight', 'B2_weight', 'B3_weight', 'B4_weight', 'imagenet_transform',
                  'tiny_imagenet_transform', 'logit_stand', 'train_per_class', 'optimizer',
                  'dot_delta') + tuple(dict.fromkeys(
                      o.name for _, o in method_options() if o.changes_result))


def differing_option(saved, mine, ignore=()):
    """First result-relevant option that differs between two options dicts, else None."""
    for key in RESULT_OPTIONS:
        if key in ignore or key not in saved or key not in mine:
            continue
        if saved[key] != mine[key]:
            return key
    return None
