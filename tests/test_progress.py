import io
import os
import pty
import struct
import threading

import pytest

from helper.engine.progress import Progress, format_metrics


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
    assert lines[0] == '[epoch 3] 100/250 loss 2.2108 acc 41.20'
    assert lines[1].startswith('[epoch 3] 200/250 ')


def test_plain_output_counts_multi_step_updates_and_unknown_total():
    out = io.StringIO()
    bar = Progress(None, desc='', print_freq=100, file=out)
    for _ in range(10):  # 25 at a time: crosses 100 and 200 once each
        bar.update(25, loss=1.5)
    assert out.getvalue().splitlines() == ['100 loss 1.5000', '200 loss 1.5000']


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
    assert '2000/2000' in text and 'loss 0.5000 acc 90.00' in text
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
    # accuracy and loss as the epoch lines print them; anything else to 4 significant digits
    assert format_metrics({'loss': 0.000123456, 'acc': 7, 'lr': 5e-05}) == 'loss 0.0001 acc 7.00 lr 5e-05'
    assert format_metrics({'acc': 1.1666667, 'loss': 4.60517}) == 'acc 1.17 loss 4.6052'


def test_byte_counts_show_megabytes_and_a_closing_percentage():
    out = io.StringIO()
    bar = Progress(3_000_000, desc='resnet56', print_freq=2_000_000, file=out, enable_bar=False, unit='B',
                   initial=500_000)
    bar.update(1_000_000)
    bar.update(1_500_000)
    bar.close(final_line=True)
    assert out.getvalue().splitlines() == ['[resnet56] 3.0/3.0 MB (100%)']


def on_a_terminal(columns, run):
    """What run(stream) writes to a real pseudo-terminal `columns` wide (0: a size that reads 0x0)."""
    import fcntl
    import termios
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack('HHHH', 0 if not columns else 24, columns, 0, 0))
    chunks = []

    def read():
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with os.fdopen(follower, 'w') as stream:
        run(stream)
        stream.flush()
    reader.join(5)
    os.close(leader)
    return b''.join(chunks).decode().replace('\r\n', '\n')


def epoch(stream):
    with Progress(782, desc='11,5,2 epoch 100/240', print_freq=100, file=stream, mininterval=0) as bar:
        for _ in range(782):
            bar.update(loss=2.30984, acc=41.234)


def test_a_terminal_that_reads_0x0_gets_lines():
    text = on_a_terminal(0, epoch)
    assert '[11,5,2 epoch 100/240] 700/782 loss 2.3098 acc 41.23' in text.splitlines()
    assert '|' not in text


@pytest.mark.parametrize('columns', [100, 80])
def test_the_bar_keeps_its_metrics_on_a_narrow_terminal(columns):
    text = on_a_terminal(columns, epoch)
    drawn = text.split('\r')[-1].strip()
    assert '782/782' in drawn and 'loss 2.3098 acc 41.23' in drawn
    assert len(drawn) <= columns
