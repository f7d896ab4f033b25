"""Progress of long loops: a tqdm bar on a terminal, a plain line every print_freq steps otherwise."""
import os
import sys

from tqdm import tqdm

# as the epoch lines print them (helper/engine/trainer.py): accuracy in % to 2 decimals, loss to 4
FORMATS = {'acc': '.2f', 'loss': '.4f'}
# the bar last: a narrow terminal cuts the bar and the times, never the count or the metrics
BAR_FORMAT = '{desc}{percentage:3.0f}% {n_fmt}/{total_fmt}{postfix} [{elapsed}<{remaining}, {rate_fmt}] |{bar}|'


def format_metrics(metrics):
    """'loss 2.3100 acc 41.20': accuracy and loss as the epoch lines give them, others to 4
    significant digits."""
    return ' '.join(f'{name} {_format_value(value, FORMATS.get(name, ".4g"))}' for name, value in metrics.items())


def _format_value(value, spec):
    if hasattr(value, 'item'):  # 0-dim tensors / numpy scalars
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'{value:{spec}}'
    return str(value)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _columns(stream):
    """The terminal's width, or None when it cannot be read (a bar is drawn anyway)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # no fileno (io.UnsupportedOperation is both)
        return None


class Progress:
    """Counts iterations and shows the latest metrics.

    Args:
        total: number of iterations expected (None if unknown).
        desc: prefix, e.g. 'epoch 3'.
        print_freq: without a terminal, print one line each time the count reaches a
            multiple of print_freq and nothing in between (250 updates, print_freq 100
            -> lines at 100 and 200). Ignored when the bar is shown.
        file: output stream (default sys.stderr, looked up at construction).
        enable_bar: True/False forces the tqdm bar on/off; None uses a bar only if
            ``file`` is a terminal.
        enable: False prints nothing at all (e.g. on DDP ranks other than 0).
        leave: keep the finished bar on screen (False for inner per-iteration bars).
        mininterval: seconds between bar redraws, so fast loops do not flood the output.
        unit: 'B' counts bytes (shown in MB with a percentage), else iterations.
        initial: the count to start from (a resumed download).

    Line format: ``[epoch 3] 100/782 loss 2.31 acc 41.2``.
    """

    def __init__(self, total, desc='', print_freq=100, file=None, enable_bar=None,
                 enable=True, leave=True, mininterval=1.0, unit=None, initial=0):
        if print_freq < 1:
            raise ValueError(f'print_freq must be >= 1, got {print_freq}')
        self.total = total
        self.desc = desc
        self.print_freq = print_freq
        self.file = sys.stderr if file is None else file
        self.enable = enable
        self.unit = unit
        self.n = self._shown = initial
        self.metrics = {}
        # a terminal that reads as 0 columns wide (some containers, CI logs) would show no bar: lines
        use_bar = _is_terminal(self.file) and _columns(self.file) != 0 if enable_bar is None else enable_bar
        self._bar = None
        if use_bar and enable:
            units = (dict(unit='B', unit_scale=True, unit_divisor=1000, desc=desc) if unit == 'B'
                     else dict(bar_format=BAR_FORMAT, desc=f'{desc}: ' if desc else ''))
            self._bar = tqdm(total=total, file=self.file, leave=leave, initial=initial,
                             mininterval=mininterval, dynamic_ncols=True, **units)

    def update(self, n=1, **metrics):
        """Advance by n iterations; keyword arguments replace the shown metrics."""
        before = self.n
        self.n += n
        self.metrics.update(metrics)
        if not self.enable:
            return
        if self._bar is not None:
            if metrics:  # refresh=False: tqdm redraws at most every mininterval
                self._bar.set_postfix_str(format_metrics(self.metrics), refresh=False)
            self._bar.update(n)
        elif self.n // self.print_freq > before // self.print_freq:
            print(self.line(), file=self.file, flush=True)
            self._shown = self.n

    def line(self):
        """The plain-text status line for the current count and metrics."""
        parts = [f'[{self.desc}]' if self.desc else '', self._count(), format_metrics(self.metrics)]
        return ' '.join(p for p in parts if p)

    def _count(self):
        if self.unit == 'B':
            done = f'{self.n / 1e6:.1f}'
            return f'{done}/{self.total / 1e6:.1f} MB ({100 * self.n / self.total:.0f}%)' if self.total \
                else f'{done} MB'
        return f'{self.n}/{self.total}' if self.total is not None else str(self.n)

    def write(self, message):
        """Print a message without breaking the bar."""
        if not self.enable:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.file)
        else:
            print(message, file=self.file, flush=True)

    def close(self, final_line=False):
        """final_line: without a bar, print the closing count unless a line just showed it."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif final_line and self.enable and self.n != self._shown:
            print(self.line(), file=self.file, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
