"""--step_graph's logic on the CPU: warm-up steps, capture, replay with the batch and teacher outputs
copied in, capture again on a learning-rate change, eager steps for other shapes. A stand-in runner
replays by calling the captured step again over the buffers it held at capture, as a CUDA graph does."""
import contextlib
import copy

import pytest
import torch

import models
from distiller_zoo import build_distiller
from distiller_zoo.base import feature_shapes
from helper.engine.loops import StudentWithLoss, forward_backward, teacher_forward
from helper.engine.options import finalize, student_parser
from helper.engine.step_graph import StepGraph, make_step_graph


def kd_setup():
    argv = ['--model_t', 'resnet8', '--path_t', 'unused.pth', '--model_s', 'resnet8', '--distill', 'crd',
            '--device', 'cpu', '--nce_k', '8']
    opt = finalize(student_parser().parse_args(argv), 'student')
    torch.manual_seed(0)
    student, teacher = models.build_model('resnet8', num_classes=10), models.build_model('resnet8', num_classes=10)
    method = build_distiller('crd', opt, feature_shapes(student), feature_shapes(teacher), 40)
    step = StudentWithLoss(student, method)
    params = list(student.parameters()) + list(method.trainable.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    return step, teacher.eval(), optimizer


def batches(n, size=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [{'input': torch.randn(size, 3, 32, 32, generator=g), 'target': torch.randint(0, 10, (size,), generator=g),
             'index': torch.randint(0, 40, (size,), generator=g),
             'contrast_idx': torch.randint(0, 40, (size, 9), generator=g)} for _ in range(n)]


def _shallow(value):
    """A container's own copy (its items the same objects): a later rebinding inside it does not show."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(value)
    return value


def _copy_into(fixed, new):
    if isinstance(fixed, torch.Tensor):
        with torch.no_grad():
            fixed.copy_(new)
    elif isinstance(fixed, (list, tuple)):
        assert len(fixed) == len(new)
        for f, n in zip(fixed, new):
            _copy_into(f, n)


class FixedBufferRunner:
    """Replays as a CUDA graph does. The step sees the tensors and Python values its owner held at
    capture (a buffer rebound instead of copied into, or a Python number that changed, is not seen),
    and every replay writes into the outputs and gradients the first one made (a caller that keeps an
    output across steps sees it overwritten)."""

    def capture(self, fn):  # a CUDA graph records without running
        self.fn, self.owner = fn, fn.__self__
        self.at_capture = {k: _shallow(v) for k, v in vars(self.owner).items()}
        self.outputs = self.grads = None

    def replay(self):
        state = vars(self.owner)
        now = dict(state)
        installed = {k: _shallow(v) for k, v in self.at_capture.items()}
        state.clear()
        state.update(installed)
        params = [p for g in self.owner.optimizer.param_groups for p in g['params']]
        self.owner.optimizer.zero_grad(set_to_none=True)
        self.fn()
        written = {k: v for k, v in state.items() if k not in installed or installed[k] is not v}
        grads = [p.grad for p in params]
        if self.outputs is None:
            self.outputs, self.grads = written, grads
        else:
            assert written.keys() == self.outputs.keys()
            for k, v in written.items():
                _copy_into(self.outputs[k], v)
            for p, fixed, new in zip(params, self.grads, grads):
                assert (fixed is None) == (new is None)
                if fixed is not None:
                    _copy_into(fixed, new)
                    p.grad = fixed
        state.clear()
        state.update(now)
        state.update(self.outputs)


def test_graph_steps_equal_eager_steps():
    step, teacher, optimizer = kd_setup()
    step_e, optimizer_e = copy.deepcopy(step), None
    params_e = list(step_e.student.parameters()) + list(step_e.method.trainable.parameters())
    optimizer_e = torch.optim.SGD(params_e, lr=0.05, momentum=0.9, weight_decay=5e-4)
    graph = StepGraph(step, optimizer, None, False, warmup=2, runner=FixedBufferRunner)
    data = batches(7) + batches(1, size=5, seed=9) + batches(2, seed=4)
    for i, b in enumerate(data):
        if i == 5:  # a milestone
            for opt_ in (optimizer, optimizer_e):
                for group in opt_.param_groups:
                    group['lr'] = 0.005
        out = teacher_forward(teacher, b['input'], False, contextlib.nullcontext)
        logit, terms = graph.step({k: v.clone() for k, v in b.items()}, out)
        logit_e, terms_e = forward_backward(step_e, b, out, 1, contextlib.nullcontext, optimizer_e, _Identity)
        optimizer_e.step()
        torch.testing.assert_close(terms, terms_e, rtol=1e-5, atol=1e-6)
    assert graph.captures == 2  # once after warm-up, once at the new learning rate
    assert graph.eager_steps == 3  # two warm-up steps and the batch of 5
    assert graph.replays == 7
    for (name, a), b in zip(step.state_dict().items(), step_e.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


class _Identity:
    @staticmethod
    def scale(x):
        return x


def test_replay_reads_the_new_batch():
    """A replay must compute the new batch's step: the same terms as an eager step on that batch from
    the same weights (a replay that kept the captured batch or teacher outputs would not)."""
    step, teacher, optimizer = kd_setup()
    graph = StepGraph(step, optimizer, None, False, warmup=0, runner=FixedBufferRunner)
    b1, b2 = batches(2)
    graph.step(b1, teacher_forward(teacher, b1['input'], False, contextlib.nullcontext))
    # the weights (and CRD's memory bank) after the first step, stepped eagerly on the second batch
    step_e = copy.deepcopy(step)
    optimizer_e = torch.optim.SGD(list(step_e.student.parameters()) + list(step_e.method.trainable.parameters()),
                                  lr=0.05)
    out2 = teacher_forward(teacher, b2['input'], False, contextlib.nullcontext)
    _, expected = forward_backward(step_e, b2, out2, 1, contextlib.nullcontext, optimizer_e, _Identity)
    _, terms = graph.step(b2, out2)
    assert graph.captures == 1 and graph.replays == 2
    torch.testing.assert_close(terms, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('device', ['cpu'])
def test_step_graph_is_off_without_cuda(device):
    step, _, optimizer = kd_setup()
    said = []

    class Opt:
        step_graph = True
    assert make_step_graph(Opt, torch.device(device), step, optimizer, None, False, said.append) is None
    assert said and 'needs CUDA' in said[0]

    class Off:
        step_graph = False
    assert make_step_graph(Off, torch.device(device), step, optimizer, None, False, said.append) is None


def test_a_step_that_cannot_be_captured_continues_eagerly():
    step, teacher, optimizer = kd_setup()
    said = []

    class Refuses:
        def capture(self, fn):
            raise RuntimeError('operation not permitted when stream is capturing')

    graph = StepGraph(step, optimizer, None, False, warmup=1, runner=Refuses, log=said.append)
    for b in batches(3):
        out = teacher_forward(teacher, b['input'], False, contextlib.nullcontext)
        logit, terms = graph.step(b, out)
        assert torch.isfinite(terms).all()
    assert graph.failed and graph.eager_steps == 3 and len(said) == 1 and 'continuing without it' in said[0]
