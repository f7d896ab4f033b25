"""The teacher compiled as frozen on the CPU (weights as constants, batch norm folded into the
convolutions) gives the eager teacher's features and logits, to rounding."""
import contextlib

import pytest
import torch
from torch._dynamo.utils import counters

import models
from helper.engine.experiment import compile_modules, compile_teacher
from helper.engine.loops import teacher_forward

pytestmark = pytest.mark.slow  # compiles a network


@pytest.mark.parametrize('preact', [False, True])
def test_frozen_teacher_matches_eager(preact):
    torch.manual_seed(0)
    eager = models.build_model('resnet8', num_classes=10).eval()
    for m in eager.modules():  # batch norms that are not the identity, so folding them shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
    frozen = models.build_model('resnet8', num_classes=10).eval()
    frozen.load_state_dict(eager.state_dict())
    compile_teacher(torch.device('cpu'), frozen)
    counters.clear()
    x = torch.randn(16, 3, 32, 32)
    want_feats, want_logit = teacher_forward(eager, x, preact, contextlib.nullcontext)
    for _ in range(2):  # the compiled call, then a replay of it
        feats, logit = teacher_forward(frozen, x, preact, contextlib.nullcontext)
        assert len(feats) == len(want_feats)
        for f, w in zip(feats, want_feats):
            torch.testing.assert_close(f, w, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(logit, want_logit, rtol=1e-4, atol=1e-4)
    # the batch norms were folded into the convolutions: freezing happened
    assert counters['inductor']['binary_folding_conv'] > 0
    assert set(frozen.state_dict()) == set(eager.state_dict())


def test_a_compiled_student_evaluated_without_gradients_reads_its_live_weights():
    """Freezing is on for the teacher's calls only: a student compiled beside a frozen teacher and
    evaluated under no_grad must see the weights the optimizer has since changed."""
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    compile_teacher(torch.device('cpu'), teacher)
    compile_modules(torch.device('cpu'), student)
    x = torch.randn(3, 4)
    with torch.no_grad():
        teacher(x)
        before = student(x)
        student.weight.add_(1.0)
        after = student(x)
    torch.testing.assert_close(after, before + x.sum(1, keepdim=True))


def test_only_the_cpu_teacher_is_frozen(monkeypatch):
    """On CUDA the teacher compiles as before (CUDA graphs; freezing there is unmeasured)."""
    seen = []
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kw: seen.append(kw))
    frozen, plain, cuda = (torch.nn.Linear(2, 2) for _ in range(3))
    compile_teacher(torch.device('cpu'), frozen)
    compile_modules(torch.device('cpu'), plain)
    compile_teacher(torch.device('cuda'), cuda)
    assert 'forward' in vars(frozen) and 'forward' not in vars(plain) and 'forward' not in vars(cuda)
    assert [kw['mode'] for kw in seen] == [None, 'reduce-overhead']
