"""The method interface the training loop talks to, and helpers shared by the methods."""
import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.logit_stand import standardize
from helper.errors import UsageError


class Option:
    """One command-line option of a method, --NAME, shown in the method's group of --help.

    default: the parser's value when the flag is omitted. published: the value an omitted flag
    (default None) takes once the method is chosen. changes_result: a changed value makes a
    different experiment (resume refuses it; RESULT_OPTIONS). check: 'positive', or a function
    value -> None or the end of an error message ('must be odd, got 4'). tag: a short key that puts
    '-<tag><value>' into the run folder's name.

    An option whose default is None is recognised as given, so it is refused with another --distill;
    one with a concrete default (CRD's --nce_k) is accepted and ignored there."""

    def __init__(self, name, type=float, default=None, help='', published=None, changes_result=True,
                 check=None, choices=None, tag=None):
        self.name, self.type, self.default, self.help = name, type, default, help
        self.published, self.changes_result, self.check = published, changes_result, check
        self.choices, self.tag = choices, tag

    def add_to(self, group):
        group.add_argument(f'--{self.name}', type=self.type, default=self.default, choices=self.choices,
                           help=self.help)

    def given(self, opt):
        """Whether the command line set this option (knowable for options whose default is None)."""
        return self.default is None and getattr(opt, self.name, None) is not None

    def validate(self, value):
        if value is None or self.check is None:
            return
        if self.check == 'positive':
            problem = None if value > 0 else f'must be positive, got {value}'
        else:
            problem = self.check(value)
        if problem:
            raise UsageError(f'--{self.name} {problem}')


class DistillKL(nn.Module):
    """KL(teacher || student) of temperature-T softmaxes over dim 1, summed, times T^2, per sample:
    Hinton's KD, the one implementation. Works on logits (N, C) and on stage maps (N, C, H, W),
    where the softmax runs over channels at each position (milestone checking).

    standardize: z-score both inputs over dim 1 before the temperature (logit standardization)."""

    def __init__(self, T, standardize=False):
        super().__init__()
        self.T = T
        self.standardize = standardize

    def forward(self, y_s, y_t):
        if self.standardize:
            y_s, y_t = standardize(y_s, dim=1), standardize(y_t, dim=1)
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        p_t = F.softmax(y_t / self.T, dim=1)
        return F.kl_div(log_p_s, p_t, reduction='sum') * self.T ** 2 / y_s.shape[0]


class Method(nn.Module):
    """What a training run optimises, as named terms: forward returns {term: weighted loss}, and
    the loss is their sum. `weights` maps each term to its weight; `loss_terms` gives the terms
    unweighted (log.csv records those)."""

    name = None
    needs_teacher = False     # run the teacher and pass its features and logit
    needs_contrast = False    # train batches carry 'contrast_idx' (CRD's negatives)
    preact = False            # wants pre-activation features
    teacher_preact = None     # the teacher's kind of features where it differs from preact
    has_init_stage = False

    def __init__(self, weights):
        super().__init__()
        self.weights = dict(weights)
        self.trainable = nn.ModuleDict()   # optimised together with the student
        self.frozen = nn.ModuleDict()      # eval mode and not optimised in the main stage

    def train(self, mode=True):
        super().train(mode)
        self.frozen.eval()
        return self

    @property
    def core(self):
        """The method itself, under any wrapper that adds terms (milestone checking): what owns
        the trainable modules, the checkpointed state and the init stage."""
        return self

    def extra_parameters(self):
        """Parameters of the modules trained beside the student (connectors, embeddings,
        regressors), init-stage ones included: what the method adds to the student's count."""
        seen = {id(p): p for m in (self.trainable, self.frozen) for p in m.parameters()}
        return sum(p.numel() for p in seen.values())

    def forward(self, s_feats, s_logit, t_feats, t_logit, batch, epoch=1):
        """{term: weight * unweighted loss}; epoch counts from 1 (for warm-up schedules)."""
        raw = self.loss_terms(s_feats, s_logit, t_feats, t_logit, batch, epoch)
        return {k: self.weights[k] * v for k, v in raw.items()}

    def loss_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch=1):
        """{term: unweighted 0-dim loss}, every key in self.weights."""
        return {'ce': F.cross_entropy(s_logit, batch['target'])}


class Vanilla(Method):
    """Cross-entropy alone: a teacher, or a student trained from scratch."""

    name = 'vanilla'

    def __init__(self, gamma=1.0):
        super().__init__({'ce': gamma})


class Distiller(Method):
    """One distillation method: which features it uses, its auxiliary modules, its loss.

    The base class adds the CE and KD terms (weights -r and -a); a subclass sets the class
    attributes and implements method_loss, its one term 'method', or declares its own `terms` and
    implements method_terms (and, with an init stage, init_modules/init_loss). The teacher's
    features are detached here, so no method can send a gradient into the teacher.

    A new method is a new module in distiller_zoo/ with a subclass that sets `name`: the registry
    (METHODS) finds it, the parser adds its `options`, resume and the run identity follow them.
    """

    name = None          # the --distill name
    paper = ''           # short citation: 'Authors, year, title'
    label = None         # the paper's short name (class XMethod: X)
    order = None         # place in METHODS and --help (None: after the numbered ones, by module)
    gamma, alpha, beta = 1.0, 0.0, 1.0   # published -r/-a/-b
    # the method's own terms and their weights as multiples of -b: the published total is
    # r*CE + a*KD + b*(sum of factor*term) (+ b*mc_weight*MC with --mc)
    terms = {'method': 1.0}
    options = ()         # the method's own command-line options (Option)
    needs_teacher = True
    supports_logit_stand = False   # --logit_stand allowed (the methods it was published for)

    @classmethod
    def published_weights(cls, opt):
        """-r/-a/-b for omitted weights; a method overrides this where a switch changes them."""
        return cls.gamma, cls.alpha, cls.beta

    @classmethod
    def complete_options(cls, opt):
        """Fill omitted weights and method options (None) with the published values, in place."""
        for name, value in zip(('gamma', 'alpha', 'beta'), cls.published_weights(opt)):
            if getattr(opt, name, None) is None:
                setattr(opt, name, float(value))
        for option in cls.options:
            if getattr(opt, option.name, None) is None and option.published is not None:
                setattr(opt, option.name, option.published)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.label = cls.__name__.removesuffix('Method')

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        own = {term: opt.beta * factor for term, factor in self.terms.items()}
        super().__init__({'ce': opt.gamma, 'kd': opt.alpha, **own})
        self.kd = DistillKL(opt.kd_T, standardize=opt.logit_stand)

    def loss_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch=1):
        t_feats = [f.detach() for f in t_feats]
        t_logit = t_logit.detach()
        terms = super().loss_terms(s_feats, s_logit, t_feats, t_logit, batch, epoch)
        terms['kd'] = self.kd(s_logit, t_logit)
        own = self.method_terms(s_feats, s_logit, t_feats, t_logit, batch, epoch)
        terms.update((k, v.reshape(())) for k, v in own.items())
        return terms

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        """The method's own unweighted terms, one per name in `terms`."""
        return {'method': self.method_loss(s_feats, s_logit, t_feats, t_logit, batch)}

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        raise NotImplementedError

    def bind_teacher(self, teacher):
        """Called once with the teacher model, for a method that reads the teacher's modules."""

    def init_modules(self, student):
        """What the init stage optimises (only methods with has_init_stage)."""
        raise NotImplementedError(f'{self.name} has no init stage')

    def init_loss(self, s_feats, t_feats):
        raise NotImplementedError(f'{self.name} has no init stage')

    def init_lr(self, opt):
        return opt.learning_rate


def match_size(f_s, f_t):
    """Average-pool the larger of two square maps down to the other's size (published rule)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


def wants_teacher_preact(method):
    """Whether the teacher's features are the pre-activation ones."""
    return method.preact if method.teacher_preact is None else method.teacher_preact


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
