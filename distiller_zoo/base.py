"""The method interface the training loop talks to, and helpers shared by the methods."""
import torch
import torch.nn.functional as F
from torch import nn

from helper.errors import UsageError


class Distiller(nn.Module):
    """One distillation method: which features it uses, its auxiliary modules, its loss.

    Subclasses set the class attributes and implement method_loss (and, with an init stage,
    init_modules/init_loss). The teacher's features are detached here, so no method can send a
    gradient into the teacher.
    """

    name = None          # the --distill name
    paper = ''           # short citation for the README
    gamma, alpha, beta = 1.0, 0.0, 1.0   # published -r/-a/-b
    preact = False       # wants pre-activation features
    has_init_stage = False
    supports_logit_stand = False   # --logit_stand allowed (the methods it was published for)
    flag_defaults = {}   # the method's own flags (e.g. dkd_beta) and their published values

    @classmethod
    def published_weights(cls, opt):
        """-r/-a/-b for omitted weights; a method overrides this where a switch changes them."""
        return cls.gamma, cls.alpha, cls.beta

    @classmethod
    def complete_options(cls, opt):
        """Fill omitted weights and method flags (None) with the published values, in place."""
        for name, value in zip(('gamma', 'alpha', 'beta'), cls.published_weights(opt)):
            if getattr(opt, name, None) is None:
                setattr(opt, name, float(value))
        for name, value in cls.flag_defaults.items():
            if getattr(opt, name, None) is None:
                setattr(opt, name, value)

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__()
        self.trainable = nn.ModuleDict()   # optimised together with the student
        self.frozen = nn.ModuleDict()      # eval mode and not optimised in the main stage

    def train(self, mode=True):
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, s_feats, s_logit, t_feats, t_logit, batch):
        """Method loss, unweighted by beta, as a 0-dim tensor."""
        t_feats = [f.detach() for f in t_feats]
        t_logit = t_logit.detach()
        return self.method_loss(s_feats, s_logit, t_feats, t_logit, batch).reshape(())

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        raise NotImplementedError

    def set_epoch(self, epoch):
        """Called before each training epoch (counting from 1), for methods with a schedule."""

    def init_modules(self, student):
        """What the init stage optimises (only methods with has_init_stage)."""
        raise NotImplementedError(f'{self.name} has no init stage')

    def init_loss(self, s_feats, t_feats):
        raise NotImplementedError(f'{self.name} has no init stage')

    def init_lr(self, opt):
        return opt.learning_rate


def zero_loss(like):
    """The published main-stage loss of methods that only act in the init stage (or KD)."""
    return like.new_zeros(())


def match_size(f_s, f_t):
    """Average-pool the larger of two square maps down to the other's size (published rule)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


def stages(feats):
    """The stage outputs: everything between the stem and the pooled vector."""
    return feats[1:-1]


def require_equal_channels(method, s_shapes, t_shapes):
    """Methods that compare channel-indexed statistics need one-to-one channels per stage."""
    s_c = [tuple(s)[1] for s in s_shapes]
    t_c = [tuple(t)[1] for t in t_shapes]
    if len(s_c) != len(t_c) or s_c != t_c:
        raise UsageError(f'{method} needs the same channels at every stage in student and teacher; '
                         f'student has {s_c}, teacher has {t_c}')


def feature_shapes(model, preact=False, image_size=32):
    """Shapes of model(x, is_feat=True, preact=preact) for a 2-sample batch, in eval mode."""
    was_training = model.training
    param = next(model.parameters())
    x = torch.zeros(2, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    model.eval()
    try:
        with torch.no_grad():
            feats, _ = model(x, is_feat=True, preact=preact)
    finally:
        model.train(was_training)
    return [f.shape for f in feats]
