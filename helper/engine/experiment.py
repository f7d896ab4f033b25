"""Building an experiment: options -> device settings, data loaders, student, teacher, method."""
import contextlib
import os
from dataclasses import dataclass

import torch

import models
from dataset import get_loaders
from distiller_zoo import METHODS, build_distiller
from distiller_zoo.base import Method, Vanilla, feature_shapes, wants_teacher_preact
from distiller_zoo.mc import (MilestoneChecking, WithMilestones, check_mc_shapes, mc_stage_count, mc_weights,
                              stage_weight_flags)
from helper import dist
from helper.engine.cpu_bf16 import cpu_bf16_native
from helper.engine.dot import DOT
from helper.errors import UsageError, teacher_missing
from models import pretrained


@dataclass
class Experiment:
    """What one run trains: method is what the loss comes from (milestone checking wrapped
    around the distiller when on); method.core owns the trainable modules and the init stage."""
    student: torch.nn.Module
    teacher: torch.nn.Module
    method: Method
    train_loader: object
    test_loader: object
    info: dict


def resolve_speed_flags(opt, device):
    """(options with what --fast turns on for this device, the autocast dtype or None).

    --fast: autocast on CUDA and on CPUs with native bf16 (AMX or AVX512-BF16; emulated bf16 is
    several times slower than fp32), compile and the device-side data path everywhere. An omitted
    --teacher_batch is 8 with --fast on CUDA (launch-bound there), else 1."""
    if opt.fast:
        opt = opt.replace(data_on_device=True, channels_last=True, compile=True,
                          amp=opt.amp or device.type == 'cuda' or (device.type == 'cpu' and cpu_bf16_native()))
    if opt.teacher_batch is None:
        opt = opt.replace(teacher_batch=8 if opt.fast and device.type == 'cuda' else 1)
    if opt.teacher_batch < 1:
        raise UsageError(f'--teacher_batch must be at least 1, got {opt.teacher_batch}')
    if not opt.amp:
        return opt, None
    if device.type == 'cuda':
        return opt, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return opt, torch.bfloat16 if device.type == 'cpu' else torch.float16


def make_autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def make_optimizer(params, opt, device):
    if getattr(opt, 'optimizer', 'sgd') == 'dot':
        return DOT(params, lr=opt.learning_rate, momentum=opt.momentum, delta=opt.dot_delta,
                   weight_decay=opt.weight_decay)
    # one fused kernel instead of one per tensor, with --compile on CUDA
    fused = bool(opt.compile) and device.type == 'cuda'
    return torch.optim.SGD(params, lr=opt.learning_rate, momentum=opt.momentum,
                           weight_decay=opt.weight_decay, fused=fused or None)


def compile_modules(device, *modules, graphs=True, dynamic=None):
    """torch.compile in place (state_dict keys unchanged). On CUDA with CUDA graphs: these small
    CIFAR nets are bound by kernel launches, not arithmetic. graphs=False: --step_graph captures
    the whole step itself."""
    mode = 'reduce-overhead' if device.type == 'cuda' and graphs else None
    for module in modules:
        if module is not None:
            module.compile(mode=mode, dynamic=dynamic)


def compile_teacher(device, teacher, graphs=True):
    """The teacher sees a few fixed batch sizes (--teacher_batch chunks, the test batch): kernels
    specialised to each, not one dynamic-shape graph. On the CPU it is compiled frozen: its weights
    become constants, batch norms fold into the convolutions, oneDNN packs the weights once.
    Inductor reads the freezing switch while tracing, which happens at calls, so it is on for the
    teacher's calls only (a compiled student evaluated without gradients keeps its live weights)."""
    if teacher is None:
        return
    if device.type != 'cpu':
        compile_modules(device, teacher, graphs=graphs, dynamic=False)
        return
    from torch._inductor import config
    compiled = torch.compile(teacher.forward, dynamic=False)

    def forward(*args, **kwargs):
        with config.patch(freezing=True):
            return compiled(*args, **kwargs)
    teacher.forward = forward


def trained_model_name(opt, kind):
    return opt.model if kind == 'teacher' else opt.model_s


def build_method(opt, kind, student, teacher, info):
    """The method object for these options: vanilla CE for a teacher, else the --distill method,
    wrapped in milestone checking under --mc 1."""
    if kind == 'teacher':
        return Vanilla()
    size = info.get('image_size', 32)
    cls = METHODS[opt.distill]
    s_shapes = feature_shapes(student, cls.preact, size)
    t_shapes = feature_shapes(teacher, wants_teacher_preact(cls), size)
    method = build_distiller(opt.distill, opt, s_shapes, t_shapes, info['n_data'])
    method.bind_teacher(teacher)
    if not opt.mc:
        return method
    n_stages = mc_stage_count(opt.model_s)
    check_mc_shapes(s_shapes, t_shapes, n_stages)
    checker = MilestoneChecking(opt.kd_T, mc_weights(opt.model_s, opt.block_depth, n_stages,
                                                     stage_weight_flags(opt)))
    return WithMilestones(method, checker, opt.mc_weight, opt.beta)


def load_teacher(opt, num_classes):
    path = opt.path_t
    if not pretrained.is_torchvision(path) and not os.path.isfile(path):
        raise teacher_missing(path)
    if pretrained.is_torchvision(path):  # the main process downloads, the others wait for it
        problem = None
        if dist.is_main():
            try:
                pretrained.resolve(path)
            except UsageError as e:
                problem = str(e)
        problem = dist.broadcast_object(problem)
        if problem:
            raise UsageError(problem)
        path = pretrained.resolve(path, download=False)
    return models.load_model(path, opt.model_t, num_classes=num_classes)


# Options that set how images are normalised and augmented, per dataset.
INPUT_OPTIONS = {'tiny_imagenet': ('tiny_imagenet_transform',), 'imagenet': ('imagenet_transform',)}


def warn_teacher_inputs(opt, log=print):
    """Warn when the summary.json beside the teacher checkpoint says it was trained on other inputs
    (another dataset, or another normalisation): its outputs on this student's inputs are not the
    ones it learned."""
    from helper.runs.run_folder import summary_or_empty
    saved = summary_or_empty(os.path.dirname(os.path.abspath(opt.path_t))).get('options')
    if not isinstance(saved, dict):
        return
    for key in ('dataset',) + INPUT_OPTIONS.get(opt.dataset, ()):
        if key in saved and saved[key] != getattr(opt, key):
            log(f'warning: the teacher was trained with --{key} {saved[key]}, this student uses '
                f'{getattr(opt, key)}: the teacher sees inputs normalised or augmented otherwise than it '
                f'learned; give the student --{key} {saved[key]} unless this is intended')
            return


def needs_contrast(opt, kind):
    return kind == 'student' and METHODS[opt.distill].needs_contrast


def build_models(opt, kind, info):
    """(student, teacher or None, method) for a data set described by info."""
    student = models.build_model(trained_model_name(opt, kind), num_classes=info['num_classes'],
                                 block_depth=opt.block_depth)
    teacher = None
    if kind == 'student':
        teacher, _ = load_teacher(opt, info['num_classes'])
        if dist.is_main():
            warn_teacher_inputs(opt)
    return student, teacher, build_method(opt, kind, student, teacher, info)


def build_experiment(opt, kind, device):
    train_loader, test_loader, info = get_loaders(opt, device, needs_contrast(opt, kind))
    student, teacher, method = build_models(opt, kind, info)
    return Experiment(student, teacher, method, train_loader, test_loader, info)
