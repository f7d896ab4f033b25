"""Milestone checking (CRD-EMKD): per-stage KL between student and teacher stage outputs,
weighted by how much each student stage was shrunk relative to its base depth."""
import torch
from torch import nn

import models
from distiller_zoo.base import DistillKL, Method
from helper.errors import UsageError


class MilestoneChecking(nn.Module):
    """sum_i weights[i-1] * DistillKL(T)(s_feats[i], t_feats[i]) for stages i = 1..len(weights);
    the softmax runs over channels at every position."""

    def __init__(self, T, weights):
        super().__init__()
        self.kl = DistillKL(T)
        self.weights = [float(w) for w in weights]

    def forward(self, s_feats, t_feats):
        terms = [w * self.kl(s_feats[i], t_feats[i].detach())
                 for i, w in enumerate(self.weights, start=1)]
        return torch.stack(terms).sum()


class WithMilestones(Method):
    """Any method plus the term 'mc': milestone checking, weighted by beta (-b) times mc_weight
    (published: r*CE + a*KD + b*(method + mc_weight*MC)), whatever the method names its terms."""

    def __init__(self, method, checker, mc_weight, beta):
        super().__init__({**method.weights, 'mc': beta * mc_weight})
        self.method = method
        self.checker = checker
        self.name, self.preact, self.teacher_preact = method.name, method.preact, method.teacher_preact
        self.needs_teacher, self.needs_contrast = True, method.needs_contrast

    @property
    def core(self):
        return self.method.core

    def loss_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch=1):
        terms = self.method.loss_terms(s_feats, s_logit, t_feats, t_logit, batch, epoch)
        terms['mc'] = self.checker(s_feats, t_feats).reshape(())
        return terms


def mc_stage_count(model_s):
    """Stages checked, as published: 4 for the ResNet18-152 family (plain or my*) and the
    4-stage ImageNet networks (*_imagenet), else 3."""
    name = models.base_name(model_s)
    return 4 if name.startswith('ResNet') or name.endswith('_imagenet') else 3


def mc_weights(model_s, block_depth, n_stages, fixed=None):
    """As published: w_i = base_depth[i] / block_depth[i] for a variable-depth student; a
    fixed-depth student takes `fixed` (--B1_weight ... --B4_weight), else 1."""
    base = models.base_depth(model_s)
    if not models.is_variable_depth(model_s) or block_depth is None or base is None:
        if models.is_variable_depth(model_s) or fixed is None:
            return [1.0] * n_stages
        return [float(w) for w in fixed[:n_stages]]
    if len(block_depth) < n_stages or len(base) < n_stages:
        raise UsageError(f'milestone checking needs {n_stages} stage depths for {model_s}, '
                         f'got block_depth {list(block_depth)}')
    return [base[i] / block_depth[i] for i in range(n_stages)]


def check_mc_shapes(s_shapes, t_shapes, n_stages):
    """MC compares stage i of student and teacher position by position: shapes must agree."""
    for i in range(1, n_stages + 1):
        if i >= len(s_shapes) - 1 or i >= len(t_shapes) - 1:
            raise UsageError(f'milestone checking needs {n_stages} stages; the student has '
                             f'{len(s_shapes) - 2} and the teacher {len(t_shapes) - 2}')
        s, t = tuple(s_shapes[i])[1:], tuple(t_shapes[i])[1:]
        if s != t:
            raise UsageError(f'milestone checking needs equal stage shapes: stage {i} of the '
                             f'student is {"x".join(map(str, s))} but the teacher\'s is '
                             f'{"x".join(map(str, t))}')


B_WEIGHT_FLAGS = ('B1_weight', 'B2_weight', 'B3_weight', 'B4_weight')


def stage_weight_flags(opt):
    """--B1_weight ... --B4_weight; a my* student takes its weights from its block_depth instead
    (the published code overwrote these flags there), so setting them for one is an error."""
    weights = [float(getattr(opt, f)) for f in B_WEIGHT_FLAGS]
    if models.is_variable_depth(opt.model_s) and any(w != 1.0 for w in weights):
        given = ', '.join(f'--{f}' for f, w in zip(B_WEIGHT_FLAGS, weights) if w != 1.0)
        raise UsageError(f'{given}: {opt.model_s} takes its MC stage weights from --block_depth '
                         f'(base depth / blocks per stage); the flags set them for fixed-depth students')
    return weights
