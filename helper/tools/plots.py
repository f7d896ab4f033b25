"""PNG plots of a training run, of a BCS search and of a method comparison (matplotlib, Agg)."""
import csv
import json
import math
import os
import statistics

import matplotlib

matplotlib.use('Agg')  # headless: runs on clusters and in tests
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from helper.launch.bcs import winner_scores  # noqa: E402
from helper.runs.checkpoint import write_bytes  # noqa: E402
from helper.errors import UsageError  # noqa: E402
from helper.runs.run_folder import summary_or_empty  # noqa: E402
from helper.runs.runlock import shown_status  # noqa: E402


def read_log(path):
    """log.csv -> {column: [float, ...]}; empty cells (a loss the method lacks) become NaN."""
    try:
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UsageError(f'cannot read {path}: {e.strerror}') from None
    columns = {}
    for row in rows:
        for key, value in row.items():
            if key is None:  # a row longer than the header
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            columns.setdefault(key, []).append(number)
    return columns


def lr_changes(epochs, lrs):
    """Epochs at which the learning rate differs from the previous epoch's."""
    return [(e, lr) for e, prev, lr in zip(epochs[1:], lrs, lrs[1:])
            if not math.isclose(prev, lr, rel_tol=1e-9, abs_tol=0.0)]


def plot_run(run_dir, out=None):
    """Accuracy and loss curves of one run (log.csv), LR changes as vertical lines.

    Writes ``out`` (default run_dir/curves.png) and returns its path.
    """
    log = read_log(os.path.join(run_dir, 'log.csv'))
    epochs = log.get('epoch', [])
    if not epochs:
        raise UsageError(f'{run_dir}/log.csv has no epochs yet')
    out = out or os.path.join(run_dir, 'curves.png')

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in [('train_acc', 'train', '-'), ('test_acc', 'test top-1', '-'),
                              ('test_acc_top5', 'test top-5', ':')]:
        if key in log:
            ax_acc.plot(epochs, log[key], style, label=label)
    if 'test_acc' in log and not all(math.isnan(v) for v in log['test_acc']):
        best = max(range(len(epochs)), key=lambda i: -math.inf if math.isnan(log['test_acc'][i])
                   else log['test_acc'][i])
        ax_acc.plot(epochs[best], log['test_acc'][best], 'o', color='C1')
        # aligned inward from the nearer side, so the label stays inside the panel
        inward = 'right' if best >= len(epochs) / 2 else 'left'
        ax_acc.annotate(f"best {log['test_acc'][best]:.2f}", (epochs[best], log['test_acc'][best]),
                        textcoords='offset points', xytext=(-4 if inward == 'right' else 4, -14), ha=inward,
                        fontsize=8)
    ax_acc.set(xlabel='epoch', ylabel='accuracy (%)', title='accuracy')

    series = [('train (total)', log.get('train_loss'), '-'), ('test CE', log.get('test_loss'), '-')]
    series += [(label, values, '--') for label, values in _run_weighted_terms(log, run_dir).items()]
    negative = False
    for label, values, style in series:
        if values and not all(math.isnan(v) or v == 0 for v in values):
            negative = negative or any(v < 0 for v in values if not math.isnan(v))
            ax_loss.plot(epochs, values, style, label=label, linewidth=1.2)
    # Terms differ by orders of magnitude: a log axis keeps each one readable.
    if negative:  # some methods' losses go below zero, which a plain log axis cannot show
        ax_loss.set_yscale('symlog', linthresh=1e-3)
    else:
        ax_loss.set_yscale('log', nonpositive='mask')
    ax_loss.set(xlabel='epoch', ylabel='loss (log scale)', title='loss terms as the optimizer weighs them')

    changes = lr_changes(epochs, log['lr']) if 'lr' in log else []
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for epoch, lr in changes:
            ax.axvline(epoch, color='grey', linestyle='--', linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for epoch, lr in changes:  # label once, at the top of the accuracy panel
        ax_acc.annotate(f'lr {lr:g}', (epoch, 1), xycoords=('data', 'axes fraction'),
                        xytext=(2, -10), textcoords='offset points', fontsize=7, color='grey')
    fig.suptitle(_run_title(run_dir), fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def weighted_terms(log, options, term_weights=None):
    """{label: per-epoch values} of each training loss term times its weight in the total.

    log.csv records the terms unweighted. term_weights ({term: weight}, summary.json's record of
    the method's weights) covers every term a method has, its own extra ones too; without it (an
    older run) the weights follow the options: gamma*CE + alpha*KD + beta*(method + mc_weight*MC),
    CE alone for a run without a teacher. Terms with a zero weight or no column are left out.
    """
    distill = options.get('distill')
    if term_weights is None:
        term_weights = _option_weights(options)
    labels = {'ce': 'γ·CE' if distill else 'CE', 'kd': 'α·KD', 'method': f'β·{distill}', 'mc': 'β·w·MC'}
    out = {}
    for term, weight in term_weights.items():
        key = f'loss_{term}'
        if weight and key in log:
            out[f'{labels.get(term, term)} (×{weight:g})'] = [weight * v for v in log[key]]
    return out


def _option_weights(options):
    if options.get('distill') is None or options.get('gamma') is None:
        return {'ce': 1.0}
    beta = options.get('beta') or 0.0
    return {'ce': options.get('gamma') or 0.0, 'kd': options.get('alpha') or 0.0, 'method': beta,
            'mc': beta * (options.get('mc_weight') or 0.0) if options.get('mc') else 0.0}


def _run_weighted_terms(log, run_dir):
    summary = summary_or_empty(run_dir)
    options = summary.get('options') if isinstance(summary.get('options'), dict) else {}
    weights = summary.get('term_weights') if isinstance(summary.get('term_weights'), dict) else None
    return weighted_terms(log, options, weights)


def _run_title(run_dir):
    name = os.path.basename(os.path.normpath(run_dir))
    s = summary_or_empty(run_dir)
    if not s:
        return name
    model = s.get('model_s') or '?'
    if s.get('block_depth'):
        model += ' [' + ','.join(map(str, s['block_depth'])) + ']'
    if s.get('model_t'):
        method = (s.get('distill') or 'scratch') + ('+MC' if s.get('mc') else '')
        model = f"{s['model_t']} -> {model}, {method}"
    return f'{name}\n{model}, {shown_status(run_dir, s.get("status", "?"))}'


def plot_search(search_dir, out=None, metric='best'):
    """The compositions a BCS search visited, in visiting order, labelled by composition.

    Reads search_dir/search.json; writes ``out`` (default search_dir/search.png), returns it.
    x is the visit number (BCS keeps the parameter count nearly constant, so parameters would
    not separate the candidates); each tick names the composition, each point its parameters.
    The winner is a red star; unfinished candidates are drawn hollow; colours are phases.
    """
    path = os.path.join(search_dir, 'search.json')
    try:
        with open(path) as f:
            search = json.load(f)
    except OSError as e:
        raise UsageError(f'cannot read {path}: {e.strerror}') from None
    except ValueError as e:
        raise UsageError(f'{path} is not valid JSON: {e}') from None
    key = f'{metric}_acc'
    points = [c for c in search.get('candidates', []) if c.get(key) is not None]
    if not points:
        raise UsageError(f'{path} has no candidate with {key} yet')
    out = out or os.path.join(search_dir, 'search.png')

    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(points) + 3), 5))
    xs = list(range(1, len(points) + 1))
    ys = [c[key] for c in points]
    ax.plot(xs, ys, '-', color='grey', linewidth=1, zorder=2)
    phases = sorted({c.get('phase', 1) for c in points})
    for phase in phases:
        idx = [i for i, c in enumerate(points) if c.get('phase', 1) == phase]
        done = [i for i in idx if points[i].get('status', 'finished') == 'finished']
        open_ = [i for i in idx if i not in done]
        color = f'C{phases.index(phase)}'
        ax.scatter([xs[i] for i in done], [ys[i] for i in done], color=color, zorder=3,
                   label=f'phase {phase}' if len(phases) > 1 else 'visited')
        if open_:
            ax.scatter([xs[i] for i in open_], [ys[i] for i in open_], facecolors='none',
                       edgecolors=color, zorder=3, label=f'phase {phase} (unfinished)')
    for x, y, c in zip(xs, ys, points):
        params = f"{c['params']:,} params" if isinstance(c.get('params'), (int, float)) else ''
        ax.annotate(f'{y:.2f}\n{params}', (x, y), textcoords='offset points', xytext=(0, 6),
                    ha='center', fontsize=7)

    winner = search.get('winner')
    title = (f"BCS: {search.get('model_t', '?')} -> {search.get('model_s', '?')}, "
             f"{search.get('distill') or 'scratch'}{'+MC' if search.get('mc') else ''}")
    if winner and winner.get(key) is not None:
        at = [x for x, c in zip(xs, points) if c.get('block_depth') == winner.get('block_depth')]
        if at:
            ax.scatter(at[:1], [winner[key]], marker='*', s=300, color='red', edgecolors='black',
                       zorder=4, label='winner')
        params = f" ({winner['params']:,} params)" if isinstance(winner.get('params'), (int, float)) else ''
        epochs = (search.get('options') or {}).get('epochs')
        title += (f"\nwinner {_depth(winner)}{params}: "
                  f"{winner_scores(winner, search.get('final'), search.get('search_epochs'), epochs, (key,))}")
    ax.set_xticks(xs, [_depth(c) for c in points], rotation=30, ha='right', fontsize=8)
    ax.set(xlabel='candidate, in visiting order (block composition)', ylabel=f'{metric} test accuracy (%)',
           title=title)
    ax.margins(x=0.08, y=0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    fig.tight_layout()
    return _save(fig, out)


def _depth(candidate):
    return '[' + ','.join(map(str, candidate.get('block_depth') or [])) + ']'


MIN_SPAN = 10.0  # accuracy points a method figure's y axis shows at least


def plot_methods(values, out, title='', teacher_acc=None, scratch_acc=None, ylabel='accuracy (%)'):
    """Bar chart comparing methods on one teacher/student pair.

    values: {method label: [accuracy per trial]} in display order. Bars show the mean, error
    bars the sample standard deviation (none for one trial). Teacher and scratch-student
    accuracies, when given, are horizontal reference lines. Writes ``out`` and returns it.
    """
    labels = [k for k, v in values.items() if v]
    if not labels:
        raise UsageError(f'nothing to plot for {title or out}')
    means = [statistics.mean(values[k]) for k in labels]
    stds = [statistics.stdev(values[k]) if len(values[k]) > 1 else 0.0 for k in labels]

    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 4.5))
    positions = range(len(labels))
    ax.bar(positions, means, yerr=stds, capsize=3, color=['C2' if 'MC' in k else 'C0' for k in labels])
    for x, mean, std in zip(positions, means, stds):
        ax.annotate(f'{mean:.2f}', (x, mean + std), textcoords='offset points', xytext=(0, 2),
                    ha='center', fontsize=7)
    refs = [(teacher_acc, 'teacher', 'C3'), (scratch_acc, 'student (scratch)', 'C7')]
    for acc, label, color in refs:
        if acc is not None:
            ax.axhline(acc, linestyle='--', color=color, linewidth=1, label=f'{label} {acc:.2f}')
    # Accuracies differ by a few points: start the axis below the lowest bar, not at 0, but show
    # at least MIN_SPAN points so that tenths of a point do not look like a gap.
    lows = [m - s for m, s in zip(means, stds)] + [a for a, _, _ in refs if a is not None]
    highs = [m + s for m, s in zip(means, stds)] + [a for a, _, _ in refs if a is not None]
    span = max(max(highs) - min(lows), MIN_SPAN)
    floor = max(0.0, 5.0 * math.floor((min(lows) - 0.5 * span) / 5.0))  # a round number
    ax.set_ylim(floor, max(highs) + 0.25 * span)
    ax.set_xticks(list(positions), labels, rotation=40, ha='right', fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis='y', alpha=0.3)
    if any(a is not None for a, _, _ in refs):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out):
    """The figure written to out (atomically: a failed write keeps the previous one), or a WriteError."""
    try:
        write_bytes(lambda f: fig.savefig(f, dpi=120, format=os.path.splitext(out)[1][1:] or 'png'), out)
    finally:
        plt.close(fig)
    return out
