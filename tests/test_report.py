import csv
import json
import os
import statistics

import pytest
from PIL import Image

from helper.tools import report

LOG_HEADER = ('epoch,train_acc,train_loss,test_acc,test_loss,test_acc_top5,lr,'
              'loss_ce,loss_kd,loss_method,loss_mc')


def write_run(root, sub, name, log_rows=3, **fields):
    """A run folder as the training code leaves it: summary.json and log.csv."""
    folder = os.path.join(root, sub, name)
    os.makedirs(folder, exist_ok=True)
    summary = {'status': 'finished', 'kind': 'student', 'model_s': 'resnet20', 'model_t': 'resnet110',
               'distill': 'crd', 'mc': 0, 'block_depth': None, 'dataset': 'cifar100', 'trial': '1',
               'best_acc': 71.0, 'best_epoch': 3, 'last_acc': 70.0, 'teacher_acc': 74.31,
               'params': 278324, 'extra_params': 41216, 'epochs': 3, 'epochs_done': 3, 'wall_time_s': 10.0,
               'run_dir': folder, 'options': {'alpha': 0.0, 'beta': 0.8}}
    summary.update(fields)
    with open(os.path.join(folder, 'summary.json'), 'w') as f:
        json.dump(summary, f)
    write_log(folder, log_rows)
    return folder


def write_log(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'log.csv'), 'w') as f:
        f.write(LOG_HEADER + '\n')
        for e in range(1, rows + 1):
            f.write(f'{e},{10 * e},{3 - 0.5 * e},{9.5 * e},{3.1 - 0.5 * e},{20 * e},0.05,1,,0.3,0.1\n')


def expected_cell(values):
    """Independent of report.cell: sample standard deviation, n in brackets."""
    if len(values) == 1:
        return f'{values[0]:.2f} (1)'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)})'


def parse_table(text, heading):
    """The first markdown table after `heading` -> (rows as lists of stripped cells)."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith('|'):
            if not line.startswith('|---'):
                rows.append([c.strip() for c in line.strip()[1:-1].split('|')])
        elif rows:
            break
    return rows


def benchmark(text, dataset='cifar100'):
    """{(teacher, student): {row label: cell}} from the dataset's benchmark table."""
    rows = parse_table(text, f'## {dataset}')
    assert rows[0][0] == 'Teacher' and rows[1][0] == 'Student'
    columns = list(zip(rows[0][1:], rows[1][1:]))
    return {col: {row[0]: row[i + 1] for row in rows[2:]} for i, col in enumerate(columns)}, rows


CRD = [70.12, 70.57, 69.88]
CRD_MC = [71.05, 71.61]
KD = [69.4]
SCRATCH = [69.06, 68.9]
WRN_KD = [74.92, 75.3]
BCS_FINAL = [72.3, 71.84, 72.11]   # trial 1 is the search's final retrain
BASE_MC = [71.2]                   # myresnet20 with its own composition (3,3,3)


@pytest.fixture
def save(tmp_path):
    root = str(tmp_path / 'save')
    for i, acc in enumerate(CRD):
        write_run(root, 'student_model', f'crd_{i}', trial=str(i), last_acc=acc, best_acc=acc + 1)
    for i, acc in enumerate(CRD_MC):
        write_run(root, 'student_model', f'crd_mc_{i}', trial=str(i), mc=1, last_acc=acc)
    write_run(root, 'student_model', 'kd_0', distill='kd', last_acc=KD[0],
              options={'alpha': 0.9, 'beta': 0})
    write_run(root, 'student_model', 'crd_kd_0', last_acc=73.0, options={'alpha': 1.0, 'beta': 0.8})
    for i, acc in enumerate(SCRATCH):  # train_teacher.py runs of the student architecture
        write_run(root, 'models', f'resnet20_{i}', kind='teacher', model_t=None, distill=None,
                  teacher_acc=None, trial=str(i), last_acc=acc)
    write_run(root, 'models', 'resnet110_0', kind='teacher', model_s='resnet110', model_t=None,
              distill=None, teacher_acc=None, last_acc=74.5)
    for i, acc in enumerate(WRN_KD):  # pretrained teacher: no teacher run, students measured it
        write_run(root, 'student_model', f'wrn_kd_{i}', model_s='wrn_16_2', model_t='wrn_40_2',
                  distill='kd', teacher_acc=75.61, trial=str(i), last_acc=acc)

    # incomplete runs
    write_run(root, 'student_model', 'crashed', status='failed', epochs_done=1, last_acc=12.5)
    write_run(root, 'student_model', 'still_running', status='running', epochs_done=2, epochs=240)
    write_log(os.path.join(root, 'student_model', 'no_summary'), 2)
    os.makedirs(os.path.join(root, 'models', 'resnet56_vanilla'))
    open(os.path.join(root, 'models', 'resnet56_vanilla', 'ckpt_epoch_240.pth'), 'w').close()
    broken = os.path.join(root, 'student_model', 'broken')
    write_log(broken, 1)
    with open(os.path.join(broken, 'summary.json'), 'w') as f:
        f.write('{"status": "fini')

    # a BCS search on a shortened schedule, then the winner retrained on the full one
    candidates = []
    for depth, acc, status in [([3, 3, 3], 60.0, 'finished'), ([3, 7, 2], 62.5, 'finished'),
                               ([3, 11, 1], 61.0, 'finished'), ([7, 6, 2], 30.0, 'running')]:
        name = 'S-myresnet20-' + '-'.join(map(str, depth)) + '_bcs'
        # run_dir as written relative to the training's working directory
        write_run(root, 'student_model', name, model_s='myresnet20', block_depth=depth, mc=1,
                  trial='1-bcs30', last_acc=acc, best_acc=acc, status=status,
                  run_dir=f'save/student_model/{name}')
        candidates.append({'block_depth': depth, 'params': 278324, 'best_acc': acc, 'last_acc': acc,
                           'run_dir': f'save/student_model/{name}', 'phase': 1, 'status': status})
    finals = []
    for i, acc in enumerate(BCS_FINAL):
        finals.append(write_run(root, 'student_model', f'S-myresnet20-3-7-2_{i}', model_s='myresnet20',
                                block_depth=[3, 7, 2], mc=1, trial=str(i), last_acc=acc))
    write_run(root, 'student_model', 'S-myresnet20-3-3-3_0', model_s='myresnet20',
              block_depth=[3, 3, 3], mc=1, last_acc=BASE_MC[0])
    search_dir = os.path.join(root, 'search', 'BCS_crd_mc')
    os.makedirs(search_dir)
    with open(os.path.join(search_dir, 'search.json'), 'w') as f:
        json.dump({'status': 'finished', 'model_s': 'myresnet20', 'model_t': 'resnet110',
                   'distill': 'crd', 'mc': 1, 'dataset': 'cifar100', 'trial': '0', 'search_epochs': 30,
                   'candidates': candidates, 'winner': candidates[1],
                   'final': {'block_depth': [3, 7, 2], 'best_acc': 72.9, 'last_acc': BCS_FINAL[0],
                             'run_dir': finals[0], 'device_hours': 0.5},
                   'device_hours': 2.25, 'options': {'alpha': 0.0}}, f)
    return root


def test_table_cells_are_mean_and_sample_std_over_trials(save):
    md_path, csv_path, text = report.report([save])
    assert md_path == os.path.join(save, 'results.md') and os.path.exists(csv_path)
    with open(md_path) as f:
        assert f.read() == text
    table, rows = benchmark(text)
    assert set(table) == {('resnet110', 'resnet20'), ('resnet110', 'myresnet20'), ('wrn_40_2', 'wrn_16_2')}

    r20 = table[('resnet110', 'resnet20')]
    assert r20['crd'] == expected_cell(CRD)
    assert r20['crd+MC'] == expected_cell(CRD_MC)
    assert r20['kd'] == expected_cell(KD) == '69.40 (1)'
    assert r20['crd+kd'] == '73.00 (1)'
    assert r20['Student (scratch)'] == expected_cell(SCRATCH)
    assert r20['Teacher acc'] == '74.50 (1)'

    wrn = table[('wrn_40_2', 'wrn_16_2')]
    assert wrn['kd'] == expected_cell(WRN_KD)
    assert wrn['Teacher acc'] == '75.61 (1) †'
    assert wrn['crd'] == '' and wrn['Student (scratch)'] == ''

    my = table[('resnet110', 'myresnet20')]
    assert my['crd+MC+BCS [3,7,2]'] == expected_cell(BCS_FINAL)
    assert my['crd+MC'] == expected_cell(BASE_MC)
    # the search's other candidates (and its shortened runs) are not table rows
    assert not any('3,11,1' in row[0] or '3,3,3' in row[0] for row in rows)

    labels = [row[0] for row in rows]
    assert labels[:4] == ['Teacher', 'Student', 'Teacher acc', 'Student (scratch)']
    assert labels.index('kd') < labels.index('crd') < labels.index('crd+MC') < labels.index('crd+MC+BCS [3,7,2]')
    assert 'sample standard deviation' in text


def test_incomplete_runs_are_listed_not_dropped(save):
    _, _, text = report.report([save])
    incomplete = {row[0]: row for row in parse_table(text, '## Incomplete runs')[1:]}
    sm = os.path.join(save, 'student_model')
    expected = {os.path.join(sm, 'crashed'), os.path.join(sm, 'still_running'),
                os.path.join(sm, 'no_summary'), os.path.join(sm, 'broken'),
                os.path.join(save, 'models', 'resnet56_vanilla'),
                os.path.join(sm, 'S-myresnet20-7-6-2_bcs')}
    assert set(incomplete) == expected
    assert incomplete[os.path.join(sm, 'crashed')][1] == 'failed'
    assert incomplete[os.path.join(sm, 'still_running')][2] == '2/240'
    assert incomplete[os.path.join(sm, 'no_summary')][1:4] == ['no summary', '2', f'{9.5 * 2:.2f}']
    assert 'unreadable' in incomplete[os.path.join(sm, 'broken')][4]
    # an unfinished run never counts in a cell: 'crashed' would have changed the crd mean
    assert benchmark(text)[0][('resnet110', 'resnet20')]['crd'] == expected_cell(CRD)


def test_csv_has_one_row_per_run(save, tmp_path):
    out = str(tmp_path / 'out')
    _, csv_path, _ = report.report([save], out=out)
    assert csv_path == os.path.join(out, 'results.csv')
    with open(csv_path, newline='') as f:
        rows = list(csv.DictReader(f))
    n_summaries = sum('summary.json' in files for _, _, files in os.walk(save))
    assert len(rows) == n_summaries + 2  # + no_summary, resnet56_vanilla
    by_run = {os.path.basename(r['run']): r for r in rows}
    assert by_run['crd_1']['last_acc'] == str(CRD[1]) and by_run['crd_1']['row'] == 'crd'
    # the student's parameters and the method's extra ones (CRD's embeddings), apart
    assert (by_run['crd_1']['params'], by_run['crd_1']['extra_params']) == ('278324', '41216')
    assert by_run['crd_kd_0']['alpha'] == '1.0' and by_run['crd_kd_0']['row'] == 'crd+kd'
    assert by_run['S-myresnet20-3-7-2_0']['search_role'] == 'final'
    assert by_run['S-myresnet20-3-7-2_0']['block_depth'] == '3,7,2'
    assert by_run['S-myresnet20-3-11-1_bcs']['search_role'] == 'candidate'
    assert by_run['still_running']['status'] == 'running'
    assert by_run['no_summary']['status'] == 'no summary'


def test_metric_best_uses_best_epoch_accuracy(save):
    _, _, text = report.report([save], metric='best')
    assert benchmark(text)[0][('resnet110', 'resnet20')]['crd'] == expected_cell([a + 1 for a in CRD])
    assert 'best-epoch' in text


def test_retrained_search_winner_shows_the_retrain_beside_the_search_score(save):
    _, _, text = report.report([save])
    (row,) = [r for r in parse_table(text, '## Block composition searches')[1:] if r[5] == '[3,7,2]']
    # last_acc: the final retrain's, labelled; the 30-epoch search scored the winner 62.5
    assert row[7] == f'{BCS_FINAL[0]:.2f} (retrained; search score 62.50 on 30 epochs)'


def test_search_without_its_run_folders_uses_search_json(tmp_path):
    root = tmp_path / 'only_search'
    root.mkdir()
    winner = {'block_depth': [3, 7, 2], 'params': 278580, 'best_acc': 71.5, 'last_acc': 71.25,
              'run_dir': '/elsewhere/student_model/x', 'phase': 1, 'status': 'finished'}
    (root / 'search.json').write_text(json.dumps(
        {'model_s': 'myresnet20', 'model_t': 'resnet110', 'distill': 'crd', 'mc': 1,
         'candidates': [winner], 'winner': winner, 'device_hours': 1.0}))
    _, _, text = report.report([str(root)])
    assert benchmark(text)[0][('resnet110', 'myresnet20')]['crd+MC+BCS [3,7,2]'] == '71.25 (1)'
    searches = parse_table(text, '## Block composition searches')
    assert searches[1][3:7] == ['finished', '1', '[3,7,2]', '278,580']


def test_cli_writes_files_and_plots(tmp_path, capsys):
    root = str(tmp_path / 'save')
    for i, acc in enumerate([70.0, 70.6]):
        write_run(root, 'student_model', f'kd_{i}', distill='kd', trial=str(i), last_acc=acc)
    out = str(tmp_path / 'report')
    assert report.main([root, '--out', out, '--plot']) == 0
    assert os.path.exists(os.path.join(out, 'results.md'))
    figure = os.path.join(out, 'methods_cifar100_resnet110_resnet20.png')
    with Image.open(figure) as image:
        image.verify()
    assert os.path.getsize(os.path.join(root, 'student_model', 'kd_0', 'curves.png')) > 0
    assert '![resnet110 -> resnet20](methods_cifar100_resnet110_resnet20.png)' in \
        open(os.path.join(out, 'results.md')).read()
    assert '| kd | ' + expected_cell([70.0, 70.6]) + ' |' in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    assert report.main([str(tmp_path / 'missing')]) == 2
    assert capsys.readouterr().err.startswith('error: ')
    assert report.main([str(tmp_path)]) == 2  # nothing to report
    assert 'no runs under' in capsys.readouterr().err


@pytest.mark.parametrize('writer', ['results.md', 'results.csv', 'methods_'])
def test_disk_full_for_a_report_file_is_exit_4_with_one_line_and_the_previous_files_kept(tmp_path, monkeypatch,
                                                                                           capsys, writer):
    from helpers_data import disk_full_for
    root = str(tmp_path)
    write_run(root, 'student_model', 'a')
    assert report.main([root, '--plot']) == 0  # the report as it was
    capsys.readouterr()
    before = {name: open(os.path.join(root, name), 'rb').read() for name in os.listdir(root)
              if os.path.isfile(os.path.join(root, name))}
    assert any(name.startswith('methods_') for name in before)
    with monkeypatch.context() as patch:
        disk_full_for(patch, writer)
        code = report.main([root, '--plot'])
    err = capsys.readouterr().err
    assert code == 4 and len(err.splitlines()) == 1 and 'Traceback' not in err
    assert err.startswith(f'error: cannot write {root}') and writer in err and 'No space left' in err
    after = {name: open(os.path.join(root, name), 'rb').read() for name in os.listdir(root)
             if os.path.isfile(os.path.join(root, name))}
    assert after == before


def test_a_killed_run_shows_as_stopped_with_its_stale_lock(tmp_path):
    """kill -9 leaves summary.json at 'running' and run.lock naming a dead pid: results.md and the
    plot title say it stopped and how to continue; a run whose holder lives stays 'running'."""
    import subprocess
    import sys
    import time
    from helper.tools import plots
    from helper.runs.runlock import RunLock
    root = str(tmp_path / 'save')
    killed = write_run(root, 'student_model', 'killed', status='running', epochs_done=1)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    beat = time.time() - 100
    with open(os.path.join(killed, 'run.lock'), 'w') as f:
        json.dump({'pid': dead.pid, 'host': __import__('socket').gethostname(), 'started': beat,
                   'heartbeat': beat}, f)
    alive = write_run(root, 'student_model', 'alive', status='running', epochs_done=1)
    lock = RunLock(alive, log=lambda *_: None)
    lock.acquire()
    try:
        _, _, text = report.report([root], plot=True)
        title = plots._run_title(killed)
        assert plots._run_title(alive).endswith(', running')
    finally:
        lock.release()
    when = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(beat))
    stopped = f'stopped (stale lock: pid {dead.pid}, last heartbeat {when}); rerun with --resume'
    rows = {r[0]: r for r in parse_table(text, '## Incomplete runs')}
    assert rows[os.path.join(root, 'student_model', 'killed')][1] == stopped
    assert rows[os.path.join(root, 'student_model', 'alive')][1] == 'running'
    assert title.endswith(stopped)
