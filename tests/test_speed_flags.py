"""The speed flags on the CPU: --amp, --channels_last, --data_on_device, --compile and --fast, and that
--fast does not move accuracy on the real digits set."""
import pytest

from helper.options import teacher_parser
from helper.run import run

pytestmark = pytest.mark.slow  # trains epochs or starts processes


def train(tmp_path, *flags, model='resnet8', epochs=1, seed=0):
    argv = ['--model', model, '--dataset', 'digits', '--epochs', str(epochs), '--num_workers', '0',
            '--save_root', str(tmp_path), '--seed', str(seed), '--print_freq', '1000', '--device', 'cpu',
            *flags]
    return run(teacher_parser().parse_args(argv), 'teacher')


@pytest.mark.parametrize('flags', [['--amp'], ['--channels_last'], ['--data_on_device'], ['--fast']])
def test_speed_flags_train_one_epoch(tmp_path, flags):
    summary = train(tmp_path, *flags, '--trial', '-'.join(f.strip('-') for f in flags))
    assert summary['status'] == 'finished'
    assert summary['options'][flags[0].strip('-')] is True
    assert 0 <= summary['last_acc'] <= 100


def test_compile_runs_or_says_why(tmp_path, capsys):
    summary = train(tmp_path, '--compile', '--trial', 'compile')
    assert summary['status'] == 'finished'
    out = capsys.readouterr().out
    # either it compiled, or it said clearly that it runs eager
    if 'compile unavailable' not in out:  # compiled: the model step ran through inductor
        assert summary['options']['compile'] is True


def test_fast_reaches_the_same_accuracy(tmp_path):
    """Teachers trained with and without --fast on digits end within noise of each other."""
    flags = ['--lr_decay_epochs', '5,7', '--batch_size', '64']
    plain = train(tmp_path / 'plain', *flags, seed=1, epochs=8)['last_acc']
    fast = train(tmp_path / 'fast', *flags, '--fast', seed=1, epochs=8)['last_acc']
    assert plain > 88 and fast > 88, (plain, fast)
    assert abs(plain - fast) < 4.0, (plain, fast)
