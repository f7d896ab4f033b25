import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT
from helper.tools import plots
from helper.errors import UsageError

LOG_HEADER = ['epoch', 'train_acc', 'train_loss', 'test_acc', 'test_loss', 'test_acc_top5', 'lr',
              'loss_ce', 'loss_kd', 'loss_method', 'loss_mc']


def write_log(folder, epochs=12, milestones=(6, 9)):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'log.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(LOG_HEADER)
        for e in range(1, epochs + 1):
            lr = 0.05 * 0.1 ** sum(e >= m for m in milestones)
            # loss_kd left empty: a method without the KD term
            writer.writerow([e, 20 + 5 * e, 4 - 0.3 * e, 18 + 4 * e, 4.1 - 0.25 * e, 50 + 3 * e, lr,
                             2.0, '', 0.5, 0.01])


def assert_png(path, min_size=(300, 200)):
    assert os.path.getsize(path) > 1000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == 'PNG'
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_lr_changes_marks_each_schedule_step():
    epochs = [1, 2, 3, 4, 5, 6]
    lrs = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert plots.lr_changes(epochs, lrs) == [(3, 0.01), (5, 0.001)]
    assert plots.lr_changes([1, 2], [0.1, 0.1]) == []


def test_plot_run_writes_curves_next_to_the_run(tmp_path):
    run = tmp_path / 'run'
    write_log(run)
    path = plots.plot_run(str(run))
    assert path == os.path.join(str(run), 'curves.png')
    assert_png(path)


def test_plot_run_without_log_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match='log.csv'):
        plots.plot_run(str(tmp_path))


def test_plot_search_writes_search_png(tmp_path):
    candidates = [
        {'block_depth': [3, 3, 3], 'params': 278324, 'best_acc': 70.1, 'last_acc': 69.8, 'phase': 1,
         'status': 'finished', 'run_dir': 'a'},
        {'block_depth': [3, 7, 2], 'params': 278580, 'best_acc': 71.4, 'last_acc': 71.0, 'phase': 1,
         'status': 'finished', 'run_dir': 'b'},
        {'block_depth': [7, 6, 2], 'params': 265000, 'best_acc': 70.9, 'last_acc': 70.2, 'phase': 2,
         'status': 'running', 'run_dir': 'c'},
    ]
    search = {'model_s': 'myresnet20', 'model_t': 'resnet110', 'distill': 'crd', 'mc': 1,
              'candidates': candidates, 'winner': candidates[1], 'device_hours': 1.5}
    (tmp_path / 'search.json').write_text(json.dumps(search))
    path = plots.plot_search(str(tmp_path))
    assert path == os.path.join(str(tmp_path), 'search.png')
    assert_png(path)


def test_plot_search_title_gives_the_retrained_winner_beside_its_search_score(tmp_path, monkeypatch):
    winner = {'block_depth': [3, 7, 2], 'params': 278580, 'best_acc': 3.0, 'last_acc': 3.0, 'phase': 1,
              'status': 'finished', 'run_dir': 'b'}
    search = {'model_s': 'myresnet20', 'model_t': 'resnet110', 'distill': 'crd', 'mc': 1, 'search_epochs': 1,
              'candidates': [winner], 'winner': winner, 'options': {'epochs': 2},
              'final': {'block_depth': [3, 7, 2], 'best_acc': 1.5, 'last_acc': 1.0, 'run_dir': 'f'}}
    (tmp_path / 'search.json').write_text(json.dumps(search))
    titles = []
    real = plots._save
    monkeypatch.setattr(plots, '_save', lambda fig, out: titles.append(fig.axes[0].get_title()) or real(fig, out))
    plots.plot_search(str(tmp_path), metric='last')
    assert titles[0].endswith('winner [3,7,2] (278,580 params): retrained on 2 epochs: last_acc 1.00; '
                              'search score on 1 epoch: last_acc 3.00')


def test_plot_methods_draws_bars_with_error_bars(tmp_path):
    out = str(tmp_path / 'sub' / 'methods.png')
    values = {'kd': [70.1, 70.5, 70.3], 'crd': [71.2], 'crd+MC': [71.9, 72.1]}
    assert plots.plot_methods(values, out, title='resnet110 -> resnet20',
                              teacher_acc=74.31, scratch_acc=69.06) == out
    assert_png(out)
    with pytest.raises(UsageError):
        plots.plot_methods({'kd': []}, str(tmp_path / 'empty.png'))


def test_figure_script_writes_the_illustrative_example(tmp_path):
    out = tmp_path / 'figure.png'
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'fig', 'draw_illustrative_example.py'),
                             '--out', str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_png(str(out), min_size=(1200, 700))


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures the plot functions draw, kept open for inspection instead of saved."""
    figures = []

    def keep(fig, out):
        figures.append(fig)
        return out

    monkeypatch.setattr(plots, '_save', keep)
    yield figures
    for fig in figures:
        plots.plt.close(fig)


def test_weighted_terms_are_what_the_total_adds_up():
    log = {'loss_ce': [2.0, 1.0], 'loss_kd': [0.5, 0.4], 'loss_method': [8.0, 6.0], 'loss_mc': [6000.0, 2000.0]}
    crd_mc = {'distill': 'crd', 'gamma': 1.0, 'alpha': 0.0, 'beta': 0.8, 'mc': 1, 'mc_weight': 0.001}
    terms = plots.weighted_terms(log, crd_mc)
    assert list(terms) == ['γ·CE (×1)', 'β·crd (×0.8)', 'β·w·MC (×0.0008)']  # alpha 0: no KD term
    assert terms['β·w·MC (×0.0008)'] == pytest.approx([4.8, 1.6])
    assert terms['β·crd (×0.8)'] == pytest.approx([6.4, 4.8])
    kd = {'distill': 'kd', 'gamma': 0.1, 'alpha': 0.9, 'beta': 0.0, 'mc': 0, 'mc_weight': 0.001}
    assert plots.weighted_terms(log, kd) == {'γ·CE (×0.1)': pytest.approx([0.2, 0.1]),
                                             'α·KD (×0.9)': pytest.approx([0.45, 0.36])}
    assert plots.weighted_terms(log, {}) == {'CE (×1)': [2.0, 1.0]}  # trained without a teacher


def test_run_curves_log_axis_weighted_terms_whole_epochs(tmp_path, kept_figures):
    run = tmp_path / 'run'
    write_log(run, epochs=3, milestones=())
    (run / 'summary.json').write_text(json.dumps({'status': 'finished', 'options': {
        'distill': 'crd', 'gamma': 1.0, 'alpha': 0.0, 'beta': 0.8, 'mc': 1, 'mc_weight': 0.001}}))
    plots.plot_run(str(run))
    ax_acc, ax_loss = kept_figures[0].axes
    assert ax_loss.get_yscale() == 'log'
    lines = {line.get_label(): list(line.get_ydata()) for line in ax_loss.get_lines()}
    assert lines['β·w·MC (×0.0008)'] == pytest.approx([0.8 * 0.001 * 0.01] * 3)
    assert lines['β·crd (×0.8)'] == pytest.approx([0.4] * 3)
    for ax in (ax_acc, ax_loss):
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_search_plot_in_visiting_order_labelled_by_composition(tmp_path, kept_figures):
    # BCS keeps the parameters nearly equal: they must not be the x axis
    candidates = [{'block_depth': d, 'params': p, 'best_acc': a, 'phase': 1, 'status': 'finished'}
                  for d, p, a in [([2, 2, 2], 175258, 92.2), ([2, 6, 1], 175514, 93.9), ([6, 5, 1], 175550, 93.1)]]
    (tmp_path / 'search.json').write_text(json.dumps({'candidates': candidates, 'winner': candidates[1]}))
    plots.plot_search(str(tmp_path))
    ax = kept_figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['[2,2,2]', '[2,6,1]', '[6,5,1]']
    assert list(ax.get_xticks()) == [1, 2, 3]
    star = [c for c in ax.collections if c.get_label() == 'winner'][0]
    assert star.get_offsets().tolist() == [[2.0, 93.9]]


def test_recorded_term_weights_cover_a_method_own_terms():
    """summary.json's term_weights (what the trainer optimised) win over the options, and a
    method's extra loss_<term> columns are weighted too."""
    log = {'loss_ce': [2.0], 'loss_kd': [0.5], 'loss_method': [8.0], 'loss_extra': [3.0]}
    options = {'distill': 'crd', 'gamma': 1.0, 'alpha': 0.0, 'beta': 0.8, 'mc': 0}
    terms = plots.weighted_terms(log, options, {'ce': 1.0, 'kd': 0.0, 'method': 0.8, 'extra': 0.25})
    assert terms == {'γ·CE (×1)': [2.0], 'β·crd (×0.8)': pytest.approx([6.4]), 'extra (×0.25)': [0.75]}


def test_run_curves_use_the_recorded_term_weights(tmp_path, kept_figures):
    run = tmp_path / 'run'
    write_log(run, epochs=2, milestones=())
    (run / 'summary.json').write_text(json.dumps({'status': 'finished', 'term_weights': {'ce': 0.5, 'method': 2.0},
                                                  'options': {'distill': 'crd', 'gamma': 1.0, 'beta': 0.8}}))
    plots.plot_run(str(run))
    lines = {line.get_label(): list(line.get_ydata()) for line in kept_figures[0].axes[1].get_lines()}
    assert lines['γ·CE (×0.5)'] == pytest.approx([1.0] * 2)
    assert lines['β·crd (×2)'] == pytest.approx([1.0] * 2)


def test_method_figure_does_not_make_tenths_of_a_point_look_like_a_gap(kept_figures, tmp_path):
    plots.plot_methods({'kd': [33.0, 33.1], 'crd': [33.3, 33.4], 'crd+MC': [33.2]}, str(tmp_path / 'm.png'))
    low, high = kept_figures[0].axes[0].get_ylim()
    assert high - low >= 10  # 0.5 points apart: a sliver of the axis, not its whole height
    assert low % 5 == 0 and 0 <= low <= 33.0 - 5  # a round floor well below the bars
    # far apart, the bars keep their room
    plots.plot_methods({'kd': [40.0], 'crd': [70.0]}, str(tmp_path / 'n.png'))
    low, high = kept_figures[1].axes[0].get_ylim()
    assert low <= 40 - 10 and high >= 70


def test_curves_keep_the_best_label_inside_the_accuracy_panel(tmp_path, kept_figures):
    write_log(str(tmp_path))  # test accuracy rises: the best epoch is the last, at the right edge
    plots.plot_run(str(tmp_path))
    fig = kept_figures[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panel = fig.axes[0]
    (label,) = [t for t in panel.texts if t.get_text().startswith('best ')]
    box, inside = label.get_window_extent(renderer), panel.get_window_extent(renderer)
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
