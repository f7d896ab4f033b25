import io

import pytest

from helper.progress import Progress, format_metrics


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_output_prints_one_line_per_print_freq():
    out = io.StringIO()
    bar = Progress(250, desc='epoch 3', print_freq=100, file=out)
    for i in range(250):
        bar.update(loss=2.3098 - i * 0.001, acc=41.2)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == '[epoch 3] 100/250 loss 2.211 acc 41.2'
    assert lines[1].startswith('[epoch 3] 200/250 ')


def test_plain_output_counts_multi_step_updates_and_unknown_total():
    out = io.StringIO()
    bar = Progress(None, desc='', print_freq=100, file=out)
    for _ in range(10):  # 25 at a time: crosses 100 and 200 once each
        bar.update(25, loss=1.5)
    assert out.getvalue().splitlines() == ['100 loss 1.5', '200 loss 1.5']


def test_disabled_progress_prints_nothing():
    out = FakeTerminal()
    bar = Progress(50, desc='x', print_freq=1, file=out, enable=False)
    for _ in range(50):
        bar.update(loss=1.0)
    bar.write('hello')
    bar.close()
    assert out.getvalue() == ''


def test_terminal_gets_a_throttled_tqdm_bar_with_metrics():
    out = FakeTerminal()
    with Progress(2000, desc='epoch 1', print_freq=1, file=out) as bar:
        for _ in range(2000):
            bar.update(loss=0.5, acc=90.0)
    text = out.getvalue()
    assert '2000/2000' in text and 'loss 0.5 acc 90' in text
    # mininterval keeps redraws rare: a handful, not one per iteration
    assert text.count('\r') < 20
    assert '[epoch 1]' not in text  # no plain lines next to the bar


def test_bar_can_be_forced_off_on_a_terminal():
    out = FakeTerminal()
    bar = Progress(4, desc='d', print_freq=2, file=out, enable_bar=False)
    for _ in range(4):
        bar.update()
    assert out.getvalue().splitlines() == ['[d] 2/4', '[d] 4/4']


def test_bad_print_freq_and_metric_formatting():
    with pytest.raises(ValueError):
        Progress(10, print_freq=0)
    assert format_metrics({'loss': 0.000123456, 'acc': 7, 'lr': 5e-05}) == 'loss 0.0001235 acc 7 lr 5e-05'


def test_byte_counts_show_megabytes_and_a_closing_percentage():
    out = io.StringIO()
    bar = Progress(3_000_000, desc='resnet56', print_freq=2_000_000, file=out, enable_bar=False, unit='B',
                   initial=500_000)
    bar.update(1_000_000)
    bar.update(1_500_000)
    bar.close(final_line=True)
    assert out.getvalue().splitlines() == ['[resnet56] 3.0/3.0 MB (100%)']
