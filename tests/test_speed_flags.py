"""The speed flags on the CPU: --amp, --channels_last, --data_on_device, --compile and --fast, and that
--fast does not move accuracy on the real digits set."""
import pytest
import torch
from torch._dynamo.utils import counters

from dataset.device_loader import DeviceLoader
from helper.engine.cpu_bf16 import cpu_bf16_native
from helper.engine.options import teacher_parser
from helper.engine.run import run
from helper.engine.trainer import Trainer

pytestmark = pytest.mark.slow  # trains epochs or starts processes


def train(tmp_path, *flags, model='resnet8', epochs=1, seed=0):
    argv = ['--model', model, '--dataset', 'digits', '--epochs', str(epochs), '--num_workers', '0',
            '--save_root', str(tmp_path), '--seed', str(seed), '--print_freq', '1000', '--device', 'cpu',
            *flags]
    return run(teacher_parser().parse_args(argv), 'teacher')


@pytest.fixture
def watched(monkeypatch):
    """The run's Trainer and, without --compile, what its first convolution saw in training steps:
    (output dtype, input in channels_last)."""
    seen = {'conv': []}
    fit = Trainer.fit

    def watching_fit(self, test_loader):
        seen['trainer'] = self
        if self.opt.compile:
            return fit(self, test_loader)
        conv = next(m for m in self.student.modules() if isinstance(m, torch.nn.Conv2d))

        def hook(module, inputs, output):
            if module.training:
                seen['conv'].append((output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last)))
        handle = conv.register_forward_hook(hook)
        try:
            return fit(self, test_loader)
        finally:
            handle.remove()
    monkeypatch.setattr(Trainer, 'fit', watching_fit)
    return seen


def weights_channels_last(module):
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def compiled_or_said_why(out):
    """Dynamo traced graphs and inductor compiled them, or the run said once that it runs eager."""
    eager = [line for line in out.splitlines() if 'running eager' in line]
    if eager:
        assert len(eager) == 1 and eager[0].startswith('--compile unavailable here ('), eager
        return
    assert counters['stats']['unique_graphs'] > 0, dict(counters['stats'])
    assert counters['inductor'] and sum(counters['inductor'].values()) > 0, dict(counters['inductor'])


def test_plain_run_is_fp32_contiguous_on_the_host_loader(tmp_path, watched):
    summary = train(tmp_path, '--trial', 'plain')
    assert summary['status'] == 'finished'
    assert watched['conv'] and set(watched['conv']) == {(torch.float32, False)}
    assert not weights_channels_last(watched['trainer'].student)
    assert not isinstance(watched['trainer'].train_loader, DeviceLoader)


@pytest.mark.parametrize('flags', [['--amp'], ['--channels_last'], ['--data_on_device'], ['--fast'],
                                   ['--fast', '--compile']])
def test_speed_flags_do_what_they_say(tmp_path, watched, capsys, flags):
    counters.clear()
    summary = train(tmp_path, *flags, '--trial', '-'.join(f.strip('-') for f in flags))
    assert summary['status'] == 'finished'
    trainer = watched['trainer']
    if flags == ['--amp']:  # CPU autocast: convolutions compute in bf16
        assert watched['conv'] and {dtype for dtype, _ in watched['conv']} == {torch.bfloat16}
    if flags == ['--channels_last']:
        assert weights_channels_last(trainer.student) and weights_channels_last(trainer.module)
        assert watched['conv'] and {cl for _, cl in watched['conv']} == {True}
    if flags == ['--data_on_device']:
        assert isinstance(trainer.train_loader, DeviceLoader)
    if flags[0] == '--fast':  # all of them (bf16 only where the CPU computes it natively)
        assert isinstance(trainer.train_loader, DeviceLoader) and weights_channels_last(trainer.student)
        assert trainer.opt.data_on_device and trainer.opt.channels_last
        with trainer.autocast():
            out = torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))
        assert summary['options']['amp'] == (out.dtype == torch.bfloat16) == cpu_bf16_native()
        if '--compile' in flags:  # asked for: compiled whatever the run's length
            assert trainer.opt.compile
            compiled_or_said_why(capsys.readouterr().out)
        else:  # a one-epoch run cannot pay for compilation: eager, and it says why
            assert not trainer.opt.compile and counters['stats']['unique_graphs'] == 0
            assert summary['options']['compile_decision'].startswith('--fast: not compiling: ')
            assert summary['options']['compile_decision'] in capsys.readouterr().out


def test_compile_runs_or_says_why(tmp_path, capsys, watched):
    counters.clear()
    summary = train(tmp_path, '--compile', '--trial', 'compile')
    assert summary['status'] == 'finished' and watched['trainer'].opt.compile
    compiled_or_said_why(capsys.readouterr().out)


def test_fast_reaches_the_same_accuracy(tmp_path):
    """Teachers trained with and without --fast on digits end within noise of each other."""
    flags = ['--lr_decay_epochs', '5,7', '--batch_size', '64']
    plain = train(tmp_path / 'plain', *flags, seed=1, epochs=8)['last_acc']
    fast = train(tmp_path / 'fast', *flags, '--fast', seed=1, epochs=8)['last_acc']
    assert plain > 88 and fast > 88, (plain, fast)
    assert abs(plain - fast) < 4.0, (plain, fast)
