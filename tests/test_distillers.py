"""Method units: every --distill method builds for same- and cross-family pairs, gives a finite
loss whose gradients reach the student and its trainable modules but never the teacher; unit tests
of the trainable parts (FitNet, VID, CC, CRD, AB, FT) and of milestone checking."""
import argparse
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import models
from crd import ContrastMemory, CRDLoss, Embed, LinearEmbed, Normalize
from distiller_zoo import (METHODS, ABLoss, Correlation, DistillKL, MilestoneChecking, Vanilla, VIDLoss,
                           WithMilestones, build_distiller, check_mc_shapes, feature_shapes, mc_stage_count,
                           mc_weights, published_option_values)
from distiller_zoo.abound import Connector
from distiller_zoo.base import wants_teacher_preact
from distiller_zoo.factor import Paraphraser, Translator
from distiller_zoo.hint import ConvReg
from helper.errors import UsageError

BATCH, NCE_K, N_DATA = 4, 64, 100
SAME_FAMILY = [('resnet56', 'resnet20'), ('wrn_40_2', 'wrn_16_2'), ('resnet32x4', 'resnet8x4')]
CROSS_FAMILY = [('resnet32x4', 'ShuffleV2'), ('vgg13', 'MobileNetV2'), ('ResNet50', 'vgg8')]
SAME_CHANNELS_ONLY = {'fsp', 'kdsvd'}
MAIN_STAGE_ZERO = {'kd', 'abound', 'fsp'}

# published -r/-a/-b (RepDistiller scripts/run_cifar_distill.sh; kdsvd has none there; dkd: mdistiller
# CE weight 1 and its own alpha/beta; dist: CE 1, kd_loss_weight 2 in dist_cifar.yaml)
PUBLISHED = {'kd': (0.1, 0.9, 0), 'hint': (1, 0, 100), 'attention': (1, 0, 1000),
             'similarity': (1, 0, 3000), 'correlation': (1, 0, 0.02), 'vid': (1, 0, 1),
             'rkd': (1, 0, 1), 'pkt': (1, 0, 30000), 'abound': (1, 0, 1), 'factor': (1, 0, 200),
             'fsp': (1, 0, 50), 'nst': (1, 0, 50), 'crd': (1, 0, 0.8), 'kdsvd': (1, 0, 1),
             'dkd': (1, 0, 1), 'dist': (1, 0, 2), 'reviewkd': (1, 0, 5), 'ofd': (1, 0, 0.001)}


def make_opt(model_s='resnet20', model_t='resnet56', **kw):
    opt = published_option_values()   # every method's own options, a new method's too
    opt.update(model_t=model_t, kd_T=4.0, hint_layer=2, feat_dim=32, nce_k=NCE_K, nce_t=0.07, nce_m=0.5,
               mode='exact', model_s=model_s, learning_rate=0.05, gamma=1.0, alpha=0.0, beta=1.0,
               dkd_alpha=1.0, dkd_beta=8.0, dkd_T=4.0, dkd_warmup=20.0, dist_beta=1.0, dist_gamma=1.0,
               dist_tau=4.0, logit_stand=False)
    opt.update(kw)
    return argparse.Namespace(**opt)


def make_batch(x):
    n = x.shape[0]
    index = torch.arange(n)
    contrast_idx = torch.randint(0, N_DATA, (n, NCE_K + 1))
    contrast_idx[:, 0] = index
    return {'input': x, 'target': torch.randint(0, 100, (n,)), 'index': index,
            'contrast_idx': contrast_idx}


@pytest.fixture(scope='module')
def zoo():
    """Each model built once per module (the big teachers are the slow part)."""
    torch.manual_seed(0)
    built = {}

    def get(name):
        if name not in built:
            built[name] = models.build_model(name)
        return built[name]
    return get


@pytest.fixture(scope='module')
def teacher_out(zoo):
    """Teacher features computed WITH autograd on, so a method that leaked a gradient into the
    teacher would leave .grad on its parameters."""
    cache = {}
    x = torch.randn(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def get(name, preact):
        if (name, preact) not in cache:
            teacher = zoo(name).eval()
            cache[(name, preact)] = teacher(x, is_feat=True, preact=preact)
        return x, cache[(name, preact)]
    return get


def grads_clear(module):
    return all(p.grad is None for p in module.parameters())


def some_grad(module):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def all_grads_finite(module):
    """Every parameter received a finite gradient."""
    return all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def descend(params, loss_fn, lr, steps):
    """Plain gradient descent (no torch.optim: its lazy imports cost seconds); returns the
    loss before and after."""
    params = list(params)
    first = loss_fn().item()
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss_fn().backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
    return first, loss_fn().item()


def build_for(name, t_name, s_name, zoo):
    teacher, student = zoo(t_name), zoo(s_name)
    cls = METHODS[name]
    s_shapes, t_shapes = feature_shapes(student, cls.preact), feature_shapes(teacher, wants_teacher_preact(cls))
    method = build_distiller(name, make_opt(s_name, t_name), s_shapes, t_shapes, N_DATA)
    method.bind_teacher(teacher)
    return method


@pytest.mark.parametrize('pair', SAME_FAMILY + CROSS_FAMILY, ids='->'.join)
@pytest.mark.parametrize('name', sorted(METHODS))
def test_method_unit(name, pair, zoo, teacher_out):
    t_name, s_name = pair
    teacher, student = zoo(t_name), zoo(s_name)
    if name in SAME_CHANNELS_ONLY and pair in CROSS_FAMILY:
        with pytest.raises(UsageError, match='same channels'):
            build_for(name, t_name, s_name, zoo)
        return
    torch.manual_seed(2)
    method = build_for(name, t_name, s_name, zoo).train()
    x, (t_feats, t_logit) = teacher_out(t_name, wants_teacher_preact(method))
    student.train()
    student.zero_grad(set_to_none=True)
    s_feats, s_logit = student(x, is_feat=True, preact=method.preact)
    terms = method.loss_terms(s_feats, s_logit, t_feats, t_logit, make_batch(x))
    assert set(terms) == set(method.weights) == {'ce', 'kd'} | set(method.terms)
    own = [terms[t] for t in method.terms]   # the method's own terms
    loss = torch.stack(own).sum() if own else s_logit.new_zeros(())
    assert loss.shape == () and torch.isfinite(loss)
    # every parameter beside the student's is counted as the method's
    assert method.extra_parameters() == sum(p.numel() for p in method.parameters())
    assert all(not m.training for m in method.frozen.modules())

    if name in MAIN_STAGE_ZERO:
        assert loss.item() == 0   # published: these add nothing in the main stage
        assert not loss.requires_grad
    else:
        loss.backward()
        assert some_grad(student)
        assert all_grads_finite(method.trainable)
        assert grads_clear(method.frozen)
    if name == 'kd':   # its knowledge is the logit KL the training loop adds
        student.zero_grad(set_to_none=True)
        DistillKL(4)(s_logit, t_logit.detach()).backward()
        assert some_grad(student)

    # the init stage does not depend on the family; FT's paraphraser on ResNet50 is costly
    if method.has_init_stage and pair in SAME_FAMILY:
        modules = method.init_modules(student).train()
        student_params = {id(p) for p in student.parameters()}
        uses_student = any(id(p) in student_params for p in modules.parameters())
        student.zero_grad(set_to_none=True)
        s_feats = student(x, is_feat=True, preact=method.preact)[0] if uses_student else None
        init_loss = method.init_loss(s_feats, t_feats)
        assert init_loss.shape == () and torch.isfinite(init_loss) and init_loss > 0
        init_loss.backward()
        for part_name, part in modules.items():
            if part_name == 'student':
                assert some_grad(part)
            else:
                assert all_grads_finite(part), part_name
        assert uses_student == (name != 'factor')   # FT trains only its paraphraser
    assert grads_clear(teacher)


def test_every_published_method_is_registered_first_in_published_order():
    assert set(list(METHODS)[:len(PUBLISHED)]) == set(PUBLISHED)
    assert [n for n, c in METHODS.items() if n in PUBLISHED and c.has_init_stage] == ['fsp', 'abound', 'factor']
    assert [n for n, c in METHODS.items() if n in PUBLISHED and c.preact] == ['abound', 'ofd']
    assert [n for n, c in METHODS.items() if n in PUBLISHED and wants_teacher_preact(c)] == ['abound', 'reviewkd',
                                                                                         'ofd']


@pytest.mark.parametrize('name', list(METHODS))
def test_registry_names_weights_and_papers(name):
    cls = METHODS[name]
    assert cls.name == name
    assert re.fullmatch(r'[^,]+, (19|20)\d\d, .+', cls.paper), cls.paper   # 'Authors, year, title'
    if name in PUBLISHED:   # a method of this project's own has no published weights to match
        assert (cls.gamma, cls.alpha, cls.beta) == pytest.approx(PUBLISHED[name])
        # its own loss weighted by -b; kd, and fsp and abound after their init stage, add none
        assert cls.terms == ({} if name in ('kd', 'fsp', 'abound') else {'method': 1.0})


def test_extra_parameters_count_the_methods_own_modules(zoo):
    # resnet56 -> resnet20: FitNet's stage-2 regressor is a 1x1 conv 32->32 with BatchNorm; CRD
    # embeds both 64-wide pooled vectors into feat_dim 32; KD adds nothing
    assert build_for('hint', 'resnet56', 'resnet20', zoo).extra_parameters() == 32 * 32 + 32 + 2 * 32
    assert build_for('crd', 'resnet56', 'resnet20', zoo).extra_parameters() == 2 * (64 * 32 + 32)
    assert build_for('kd', 'resnet56', 'resnet20', zoo).extra_parameters() == 0


def test_build_distiller_unknown_name_suggests():
    with pytest.raises(UsageError, match="unknown --distill 'crdd'; did you mean crd"):
        build_distiller('crdd', make_opt(), [], [], N_DATA)


def test_feature_shapes_restores_mode_and_rng(zoo):
    model = zoo('resnet20').train()
    state = torch.get_rng_state()
    shapes = feature_shapes(model)
    assert model.training
    assert torch.equal(state, torch.get_rng_state())
    assert [tuple(s) for s in shapes] == [(2, 16, 32, 32), (2, 16, 32, 32), (2, 32, 16, 16),
                                          (2, 64, 8, 8), (2, 64)]
    assert [tuple(s) for s in feature_shapes(model, image_size=64)][-2] == (2, 64, 16, 16)


# ---- FitNet ---------------------------------------------------------------------------------

@pytest.mark.parametrize('s_shape,t_shape,kind', [
    ((2, 16, 32, 32), (2, 64, 16, 16), torch.nn.Conv2d),            # halve
    ((2, 16, 8, 8), (2, 64, 16, 16), torch.nn.ConvTranspose2d),     # double
    ((2, 16, 8, 8), (2, 64, 6, 6), torch.nn.Conv2d),                # shrink by a valid conv
    ((2, 16, 4, 4), (2, 64, 4, 4), torch.nn.Conv2d),                # same size, 1x1
])
def test_convreg_maps_student_to_teacher_shape(s_shape, t_shape, kind):
    reg = ConvReg(s_shape, t_shape)
    assert type(reg.conv) is kind
    out = reg(torch.randn(s_shape))
    assert out.shape == t_shape and (out >= 0).all()   # ends in ReLU
    assert (ConvReg(s_shape, t_shape, use_relu=False)(torch.randn(s_shape)) < 0).any()


def test_convreg_unsupported_sizes_are_a_usage_error():
    with pytest.raises(UsageError, match='4x4 onto a teacher map of 16x16'):
        ConvReg((2, 8, 4, 4), (2, 8, 16, 16))


def test_hint_layer_out_of_range():
    shapes = [torch.Size(s) for s in [(2, 16, 32, 32), (2, 16, 32, 32), (2, 32, 16, 16),
                                      (2, 64, 8, 8), (2, 64)]]
    with pytest.raises(UsageError, match='--hint_layer must be between 0 and 3'):
        build_distiller('hint', make_opt(hint_layer=4), shapes, shapes, N_DATA)


def test_fitnet_regressor_learns():
    torch.manual_seed(0)
    s_shape, t_shape = (8, 16, 16, 16), (8, 32, 8, 8)
    f_s, f_t = torch.randn(s_shape), torch.rand(t_shape)
    method = build_distiller('hint', make_opt(hint_layer=1), [None, s_shape, None],
                             [None, t_shape, None], N_DATA)
    first, last = descend(method.trainable.parameters(),
                          lambda: method.method_loss([f_s] * 3, None, [f_t] * 3, torch.zeros(1), {}), 0.1, 5)
    assert last < first


# ---- VID ------------------------------------------------------------------------------------

def test_vid_initial_variance_and_likelihood():
    torch.manual_seed(0)
    vid = VIDLoss(8, 16, 16, init_pred_var=5.0, eps=1e-5)
    var = F.softplus(vid.log_scale) + vid.eps
    torch.testing.assert_close(var, torch.full((16,), 5.0))
    f_s, f_t = torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)   # student pooled to 4x4
    mean = vid.regressor(F.adaptive_avg_pool2d(f_s, 4))
    expected = 0.5 * ((mean - f_t) ** 2 / 5.0 + math.log(5.0))
    torch.testing.assert_close(vid(f_s, f_t), expected.mean())


def test_vid_variance_and_regressor_learn():
    torch.manual_seed(0)
    vid = VIDLoss(8, 16, 16)
    f_s, f_t = torch.randn(4, 8, 4, 4), 0.1 * torch.randn(4, 16, 4, 4)
    first, last = descend(vid.parameters(), lambda: vid(f_s, f_t), 0.5, 10)
    assert last < first
    # a small-residual target pulls the predicted variance down from its initial 5
    assert (F.softplus(vid.log_scale) < 5.0).all()


# ---- CC -------------------------------------------------------------------------------------

def test_cc_linear_embeddings_learn():
    torch.manual_seed(0)
    embed_s, embed_t = LinearEmbed(64, 16), LinearEmbed(128, 16)
    f_s, f_t = torch.randn(8, 64, 1, 1), torch.randn(8, 128)   # any trailing dims flatten
    assert embed_s(f_s).shape == (8, 16)
    params = list(embed_s.parameters()) + list(embed_t.parameters())
    first, last = descend(params, lambda: Correlation()(embed_s(f_s), embed_t(f_t)), 0.01, 5)
    assert last < first


# ---- CRD ------------------------------------------------------------------------------------

def unit(n, d):
    return F.normalize(torch.randn(n, d), dim=1)


def test_embed_and_normalize_give_unit_rows():
    x = torch.randn(5, 7)
    torch.testing.assert_close(Normalize(2)(x).norm(dim=1), torch.ones(5))
    out = Embed(12, 6)(torch.randn(5, 3, 2, 2))
    assert out.shape == (5, 6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_memory_momentum_update_touches_only_the_batch_rows():
    torch.manual_seed(0)
    mem = ContrastMemory(8, 20, K=5, T=0.07, momentum=0.5)
    before1, before2 = mem.memory_v1.clone(), mem.memory_v2.clone()
    v1, v2, y = unit(3, 8), unit(3, 8), torch.tensor([2, 7, 11])
    mem.update(v1, v2, y)
    for before, memory, v in ((before1, mem.memory_v1, v1), (before2, mem.memory_v2, v2)):
        expected = F.normalize(0.5 * before[y] + 0.5 * v, dim=1)
        torch.testing.assert_close(memory[y], expected)
        others = torch.ones(20, dtype=torch.bool)
        others[y] = False
        assert torch.equal(memory[others], before[others])


def test_memory_gather_sees_other_ranks_rows():
    torch.manual_seed(0)
    mem = ContrastMemory(8, 20, K=5, momentum=0.0)   # momentum 0: rows become the new vectors
    v1, v2, y = unit(2, 8), unit(2, 8), torch.tensor([0, 1])
    other = {'v1': unit(2, 8), 'v2': unit(2, 8), 'y': torch.tensor([5, 6])}
    calls = []

    def gather(t):   # stands in for an all-gather across two ranks
        key = 'y' if t.dtype == torch.long else ('v1', 'v2')[sum(c != 'y' for c in calls)]
        calls.append(key)
        return torch.cat([t, other[key]])
    mem.update(v1, v2, y, gather=gather)
    assert sorted(calls) == ['v1', 'v2', 'y']
    torch.testing.assert_close(mem.memory_v1[[0, 1, 5, 6]], torch.cat([v1, other['v1']]))
    torch.testing.assert_close(mem.memory_v2[[0, 1, 5, 6]], torch.cat([v2, other['v2']]))


def test_memory_normalisation_constant_set_once_without_host_sync(monkeypatch):
    torch.manual_seed(0)
    mem = ContrastMemory(8, 50, K=10, T=0.1, momentum=0.5)
    v1, v2, y = unit(4, 8), unit(4, 8), torch.arange(4)
    idx = torch.randint(0, 50, (4, 11))
    idx[:, 0] = y
    raw_v1 = torch.exp(torch.bmm(mem.memory_v2[idx], v1.unsqueeze(2)) / 0.1)
    raw_v2 = torch.exp(torch.bmm(mem.memory_v1[idx], v2.unsqueeze(2)) / 0.1)

    def no_item(self):
        raise AssertionError('host sync via .item()')
    monkeypatch.setattr(torch.Tensor, 'item', no_item)
    out_v1, out_v2 = mem(v1, v2, y, idx)
    monkeypatch.undo()
    torch.testing.assert_close(mem.z_v1, raw_v1.mean() * 50)
    torch.testing.assert_close(mem.z_v2, raw_v2.mean() * 50)
    torch.testing.assert_close(out_v1, raw_v1 / mem.z_v1)
    torch.testing.assert_close(out_v2, raw_v2 / mem.z_v2)
    z1, z2 = mem.z_v1.clone(), mem.z_v2.clone()
    mem(unit(4, 8), unit(4, 8), y, idx)
    assert torch.equal(mem.z_v1, z1) and torch.equal(mem.z_v2, z2)


def test_memory_samples_uniform_negatives_with_positive_first():
    torch.manual_seed(0)
    mem = ContrastMemory(8, 30, K=6, T=0.07)
    y = torch.tensor([3, 4, 9])
    idx = mem.sample(y)
    assert idx.shape == (3, 7) and torch.equal(idx[:, 0], y)
    assert idx.min() >= 0 and idx.max() < 30
    out_v1, out_v2 = mem(unit(3, 8), unit(3, 8), y)   # no contrast_idx: sampled inside
    assert out_v1.shape == out_v2.shape == (3, 7, 1) and (out_v1 > 0).all()


@pytest.mark.parametrize('n_data, k', [(200, 63), (40, 10), (1000, 15)])
def test_contrast_memory_scores_match_the_published_gather(n_data, k):
    """Both ways of scoring (one matmul over the bank, or gathering K + 1 rows per sample) give
    the published exp(<memory[idx], v> / T), its gradient, and survive the in-place update."""
    results = []
    for all_rows in (True, False):
        torch.manual_seed(0)
        mem = ContrastMemory(16, n_data, k)
        mem.score_all_rows = all_rows
        v1, v2 = unit(8, 16).requires_grad_(), unit(8, 16).requires_grad_()
        y = torch.randperm(n_data)[:8]
        idx = torch.randint(0, n_data, (8, k + 1))
        idx[:, 0] = y
        published = torch.exp((mem.memory_v2[idx] * v1.detach()[:, None]).sum(-1, keepdim=True) / mem.T)
        out_v1, out_v2 = mem(v1, v2, y, idx)   # updates the rows y in place
        torch.testing.assert_close(out_v1 * mem.z_v1, published, rtol=1e-5, atol=1e-6)
        (out_v1.log().sum() + out_v2.sum()).backward()
        results.append((out_v1.detach(), out_v2.detach(), v1.grad, v2.grad, mem.memory_v1.clone()))
    assert ContrastMemory(16, n_data, k).score_all_rows == (n_data <= 4 * (k + 1))
    for a, b in zip(*results):   # rounding of the dots, scaled by 1 / T = 14 (and exp)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(a.abs().max()))


def test_crd_loss_trains_both_embeddings():
    torch.manual_seed(0)
    opt = argparse.Namespace(s_dim=16, t_dim=24, feat_dim=8, nce_k=10, nce_t=0.07, nce_m=0.5,
                             n_data=40)
    crd = CRDLoss(opt)
    f_s, f_t, idx = torch.randn(4, 16), torch.randn(4, 24), torch.tensor([0, 5, 9, 30])
    contrast_idx = torch.randint(0, 40, (4, 11))
    contrast_idx[:, 0] = idx
    loss = crd(f_s, f_t, idx, contrast_idx)
    assert loss.shape == (1,) and torch.isfinite(loss)
    loss.sum().backward()
    assert all_grads_finite(crd.embed_s) and all_grads_finite(crd.embed_t)
    assert some_grad(crd.embed_s) and some_grad(crd.embed_t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.filterwarnings('ignore:Synchronization debug mode')
def test_crd_runs_on_cuda():
    opt = argparse.Namespace(s_dim=16, t_dim=24, feat_dim=8, nce_k=10, nce_t=0.07, nce_m=0.5,
                             n_data=40)
    crd = CRDLoss(opt).cuda()
    idx = torch.arange(4, device='cuda')
    torch.cuda.set_sync_debug_mode('error')   # any host sync in the step raises
    try:
        for _ in range(2):   # first call sets Z, second reuses it
            loss = crd(torch.randn(4, 16, device='cuda'), torch.randn(4, 24, device='cuda'), idx)
            loss.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert loss.device.type == 'cuda' and torch.isfinite(loss).all()
    assert crd.contrast.z_v1.device.type == 'cuda' and crd.contrast.z_v1 > 0


class NoHostSync(TorchDispatchMode):
    """The CPU stand-in for CUDA's sync debug mode: raises on every operation that would make the
    host wait for the device (a tensor read as a Python value, an output sized by its data)."""
    SYNCING = {'_local_scalar_dense', 'item', 'is_nonzero', 'equal', 'nonzero', 'nonzero_static', 'masked_select',
               '_unique2', 'unique_dim', 'unique_consecutive', 'repeat_interleave'}
    MASK_INDEXED = {'index', 'index_put', 'index_put_', '_index_put_impl_'}  # a mask is turned into indices

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.SYNCING:
            raise AssertionError(f'host sync in the step: aten.{name}')
        if name in self.MASK_INDEXED and any(getattr(i, 'dtype', None) == torch.bool for i in args[1] or ()):
            raise AssertionError(f'host sync in the step: aten.{name} with a boolean mask')
        return func(*args, **(kwargs or {}))


class NoHostRead(TorchFunctionMode):
    """Reads that bypass the dispatcher on the CPU (on CUDA they copy to the host and wait)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu):
            raise AssertionError(f'host read in the step: {func.__name__}')
        return func(*args, **(kwargs or {}))


def test_no_host_sync_stand_in_catches_what_cuda_would():
    x = torch.ones(3)
    for sync in (lambda: x.sum().item(), lambda: bool(x[0] > 0), lambda: float(x[0]), lambda: x[x > 0],
                 lambda: x.nonzero(), lambda: x.tolist(), lambda: x.index_put_((x > 0,), x[0])):
        with pytest.raises(AssertionError, match='host'), NoHostSync(), NoHostRead():
            sync()


def test_crd_step_has_no_host_sync_on_cpu():
    """The CPU counterpart of test_crd_runs_on_cuda: the first step sets Z, the second reuses it, and
    neither forward nor backward reads a value back to the host."""
    opt = argparse.Namespace(s_dim=16, t_dim=24, feat_dim=8, nce_k=10, nce_t=0.07, nce_m=0.5,
                             n_data=40)
    crd = CRDLoss(opt)
    idx = torch.arange(4)
    for _ in range(2):
        f_s, f_t = torch.randn(4, 16), torch.randn(4, 24)
        with NoHostSync(), NoHostRead():
            loss = crd(f_s, f_t, idx)
            loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert (crd.contrast.z_v1 > 0).all() and (crd.contrast.z_v2 > 0).all()


# ---- AB -------------------------------------------------------------------------------------

def test_ab_loss_penalises_the_wrong_side_of_the_margin():
    # student values against teacher sign: only (s > -1, t <= 0) and (s <= 1, t > 0) count
    s = torch.tensor([[-2.0, 0.5, 0.5, 2.0, 0.0]]).view(1, 5, 1, 1)
    t = torch.tensor([[-1.0, -1.0, 1.0, 1.0, 0.0]]).view(1, 5, 1, 1)
    per_element = 0.0 + (0.5 + 1) ** 2 + (0.5 - 1) ** 2 + 0.0 + (0.0 + 1) ** 2
    losses = ABLoss(2, margin=1.0)([s, s], [t, t])
    # stage weights 2^(i - n + 1): 1/2 then 1; divided by batch (1), times 3/1000
    torch.testing.assert_close(losses[0], torch.tensor(0.5 * per_element * 3 / 1000))
    torch.testing.assert_close(losses[1], torch.tensor(1.0 * per_element * 3 / 1000))


def test_ab_connector_identity_or_linear_convreg():
    conn = Connector([(2, 16, 8, 8), (2, 16, 8, 8)], [(2, 16, 8, 8), (2, 32, 4, 4)])
    assert isinstance(conn.connectors[0], torch.nn.Identity)
    assert isinstance(conn.connectors[1], ConvReg) and not conn.connectors[1].use_relu
    x = torch.randn(2, 16, 8, 8)
    out = conn([x, x])
    assert torch.equal(out[0], x) and out[1].shape == (2, 32, 4, 4)
    with pytest.raises(UsageError, match='as many student stages'):
        Connector([(2, 16, 8, 8)], [(2, 16, 8, 8), (2, 32, 4, 4)])


def test_ab_connector_is_trained_only_in_the_init_stage(zoo):
    student = zoo('resnet20')
    shapes = feature_shapes(student, preact=True)
    t_shapes = feature_shapes(zoo('resnet8x4'), preact=True)
    method = build_distiller('abound', make_opt(), shapes, t_shapes, N_DATA)
    assert len(method.trainable) == 0 and 'connector' in method.frozen
    modules = method.init_modules(student)
    assert modules['connector'] is method.frozen['connector']
    assert {id(p) for p in student.get_feat_modules().parameters()} <= \
        {id(p) for p in modules.parameters()}
    method.train()
    assert not method.frozen['connector'].training


# ---- FT -------------------------------------------------------------------------------------

def test_paraphraser_and_translator_shapes():
    para = Paraphraser((2, 64, 8, 8))
    factor, rec = para(torch.randn(2, 64, 8, 8))
    assert factor.shape == (2, 32, 8, 8) and rec.shape == (2, 64, 8, 8)
    assert torch.equal(para(torch.ones(1, 64, 8, 8), is_factor=True),
                       para(torch.ones(1, 64, 8, 8))[0])
    assert Translator((2, 16, 8, 8), (2, 64, 8, 8))(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)


def test_ft_paraphraser_frozen_in_main_stage_and_learns_in_init():
    torch.manual_seed(0)
    s_shapes = [None, None, torch.Size((4, 16, 8, 8)), None]
    t_shapes = [None, None, torch.Size((4, 32, 8, 8)), None]
    method = build_distiller('factor', make_opt('resnet8x4'), s_shapes, t_shapes, N_DATA).train()
    assert not method.frozen['paraphraser'].training and method.trainable['translator'].training
    f_t = torch.rand(4, 32, 8, 8)
    modules = method.init_modules(None).train()
    first, last = descend(modules.parameters(),
                          lambda: method.init_loss(None, [None, None, f_t, None]), 0.01, 10)
    assert last < first
    method.train()
    assert not method.frozen['paraphraser'].training


@pytest.mark.parametrize('model_s,lr', [('resnet8x4', 0.01), ('wrn_16_2', 0.01),
                                        ('myresnet20', 0.05), ('wrn_10_2', 0.05), ('ShuffleV2', 0.05),
                                        ('vgg8', 0.05)])
def test_ft_init_lr(model_s, lr):
    assert METHODS['factor'].init_lr(None, make_opt(model_s)) == lr


def test_other_init_stages_use_the_learning_rate():
    assert METHODS['abound'].init_lr(None, make_opt('resnet8x4')) == 0.05
    assert METHODS['fsp'].init_lr(None, make_opt('resnet8x4')) == 0.05


# ---- MC -------------------------------------------------------------------------------------

def test_mc_capacity_weights():
    assert mc_weights('myresnet20', [3, 7, 2], 3) == pytest.approx([1, 3 / 7, 3 / 2])
    assert mc_weights('myResNet34', [1, 2, 3, 1], 4) == pytest.approx([3, 2, 2, 3])
    assert mc_weights('myresnet20', None, 3) == [1.0, 1.0, 1.0]
    assert mc_weights('resnet20', None, 3) == [1.0, 1.0, 1.0]
    assert mc_weights('vgg8', None, 3) == [1.0, 1.0, 1.0]
    assert mc_stage_count('myResNet18') == 4 and mc_stage_count('ResNet50') == 4
    assert mc_stage_count('myresnet20') == 3 and mc_stage_count('wrn_16_2') == 3


def test_mc_on_variable_depth_student(zoo, teacher_out):
    torch.manual_seed(0)
    student = models.build_model('myresnet20', block_depth=[3, 7, 2]).train()
    teacher = zoo('resnet56')
    check_mc_shapes(feature_shapes(student), feature_shapes(teacher), 3)
    weights = mc_weights('myresnet20', [3, 7, 2], 3)
    mc = MilestoneChecking(4, weights)
    x, (t_feats, _) = teacher_out('resnet56', False)
    s_feats, _ = student(x, is_feat=True)
    loss = mc(s_feats, t_feats)
    parts = [DistillKL(4)(s_feats[i], t_feats[i]) for i in (1, 2, 3)]
    torch.testing.assert_close(loss, parts[0] + 3 / 7 * parts[1] + 3 / 2 * parts[2])
    loss.backward()
    assert some_grad(student.layer1) and some_grad(student.layer3)
    assert grads_clear(teacher)


def test_mc_shape_mismatch_names_both_shapes(zoo):
    s_shapes, t_shapes = feature_shapes(zoo('resnet20')), feature_shapes(zoo('resnet32x4'))
    with pytest.raises(UsageError, match=r'stage 1 .* 16x32x32 .* 64x32x32'):
        check_mc_shapes(s_shapes, t_shapes, 3)
    with pytest.raises(UsageError, match='needs 4 stages'):
        check_mc_shapes(s_shapes, s_shapes, 4)


# ---- the method interface: named, weighted terms ------------------------------------------

def test_forward_returns_each_named_term_times_its_weight(zoo, teacher_out):
    torch.manual_seed(0)
    student = zoo('resnet20')
    x, (t_feats, t_logit) = teacher_out('resnet56', False)
    s_feats, s_logit = student(x, is_feat=True)
    batch = make_batch(x)
    for name, own in (('kd', set()), ('hint', {'method'})):
        opt = make_opt(gamma=0.5, alpha=0.25, beta=3.0)
        method = build_distiller(name, opt, feature_shapes(student), feature_shapes(zoo('resnet56')), N_DATA)
        weighted = method(s_feats, s_logit, t_feats, t_logit, batch)
        raw = method.loss_terms(s_feats, s_logit, t_feats, t_logit, batch)
        assert set(weighted) == set(raw) == {'ce', 'kd'} | own
        assert method.weights == {'ce': 0.5, 'kd': 0.25, **{t: 3.0 for t in own}}
        for term, value in weighted.items():
            assert torch.allclose(value, method.weights[term] * raw[term])
        assert torch.allclose(raw['ce'], F.cross_entropy(s_logit, batch['target']))
        assert torch.allclose(raw['kd'], DistillKL(4)(s_logit, t_logit))


def test_milestone_checking_wraps_any_method_as_one_more_term(zoo, teacher_out):
    torch.manual_seed(0)
    student = zoo('resnet20')
    x, (t_feats, t_logit) = teacher_out('resnet56', False)
    s_feats, s_logit = student(x, is_feat=True)
    inner = build_distiller('hint', make_opt(beta=100.0), feature_shapes(student),
                            feature_shapes(zoo('resnet56')), N_DATA)
    checker = MilestoneChecking(4, [1.0, 1.0, 1.0])
    method = WithMilestones(inner, checker, 0.001, 100.0)
    assert method.core is inner and method.preact == inner.preact
    assert method.weights['mc'] == pytest.approx(100.0 * 0.001)   # -b * --mc_weight, as published
    terms = method.loss_terms(s_feats, s_logit, t_feats, t_logit, make_batch(x))
    assert set(terms) == {'ce', 'kd', 'method', 'mc'}
    assert torch.allclose(terms['mc'], checker(s_feats, t_feats))
    assert set(method.state_dict()) == {f'method.{k}' for k in inner.state_dict()}


def test_vanilla_is_cross_entropy_alone():
    logit, target = torch.randn(6, 5), torch.randint(0, 5, (6,))
    method = Vanilla()
    assert not method.needs_teacher and method.weights == {'ce': 1.0}
    terms = method(None, logit, None, None, {'target': target})
    assert set(terms) == {'ce'} and torch.allclose(terms['ce'], F.cross_entropy(logit, target))


def test_logit_standardization_makes_kd_blind_to_logit_shift_and_scale():
    torch.manual_seed(0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    kl = DistillKL(2, standardize=True)
    assert torch.allclose(kl(s, t), kl(3 * s + 7, t), atol=1e-5)
    assert not torch.allclose(DistillKL(2)(s, t), DistillKL(2)(3 * s + 7, t), atol=1e-3)


def test_readme_methods_table_lists_every_method_with_its_paper():
    import os
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')).read()
    for name, cls in METHODS.items():
        rows = [l for l in readme.splitlines() if l.startswith(f'| `{name}` |')]
        assert len(rows) == 1, name
        cells = [c.strip() for c in rows[0].split('|')]
        authors_year = ', '.join(cls.paper.split(', ')[:2])
        assert cells[2] == cls.label and cells[3].startswith(authors_year), (name, cells[2:4])
    dot = [l for l in readme.splitlines() if l.startswith('| `--optimizer dot`')]
    assert len(dot) == 1 and 'Zhao et al., 2023, DOT: A Distillation-Oriented Trainer' in dot[0]
