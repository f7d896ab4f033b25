"""scripts/demo.sh end to end on the digits set (several minutes: the one slow test).

It runs into a temporary DEMO_SAVE_ROOT, so ./save/demo is left alone. Set SKIP_DEMO_TEST=1 to
leave it out of a quick local run.
"""
import glob
import json
import os
import re
import statistics
import subprocess

import pytest
from PIL import Image

from conftest import ROOT

pytestmark = pytest.mark.slow  # trains epochs or starts processes

ROWS = ('teacher', 'student from scratch', 'student distilled (KD)', 'student distilled (CRD+MC)',
        'BCS best composition (CRD+MC)')


def table_rows(text):
    """{row name: (model, mean accuracy, std or None, n)} from the printed markdown table."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'\| (.+?) \| (.+?) \| ([\d,]+) \| (\d+\.\d\d)(?: ± (\d+\.\d\d))? \((\d+)\) \|$', line)
        if m:
            std = float(m.group(5)) if m.group(5) else None
            out[m.group(1)] = (m.group(2), float(m.group(4)), std, int(m.group(6)))
    return out


def only(pattern):
    found = glob.glob(pattern)
    assert len(found) == 1, (pattern, found)
    return found[0]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def assert_image(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 200 and image.size[1] > 200


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get('SKIP_DEMO_TEST') == '1', reason='SKIP_DEMO_TEST=1')
def test_demo_runs_offline_and_prints_every_row(tmp_path):
    save = tmp_path / 'demo'
    save.mkdir()
    (save / 'stale.txt').write_text('from an earlier demo')
    (save / '.made-by-demo').write_text('')  # that demo's mark: the folder is the demo's to remove
    env = dict(os.environ, DEMO_SAVE_ROOT=str(save), PYTHONUNBUFFERED='1', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'demo.sh')], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'removing the previous demo results' in proc.stdout and not (save / 'stale.txt').exists()
    check_demo_outputs(save, proc.stdout)


@pytest.mark.parametrize('made_by', ['user', 'link'])
def test_demo_never_removes_a_folder_it_did_not_make(tmp_path, made_by):
    save = tmp_path / 'save'  # DEMO_SAVE_ROOT=./save: every run of the user
    run = save / 'models' / 'resnet8_cifar100_trial_0'
    run.mkdir(parents=True)
    (run / 'summary.json').write_text('{}')
    if made_by == 'link':  # a link to the user's runs, even with the mark beside them
        (save / '.made-by-demo').write_text('')
        save = tmp_path / 'link'
        save.symlink_to(tmp_path / 'save')
    env = dict(os.environ, DEMO_SAVE_ROOT=str(save), CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'demo.sh')], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f'error: {save} exists and was not made by the demo (no {save}/.made-by-demo); set ' \
                        'DEMO_SAVE_ROOT to a new folder'
    assert (run / 'summary.json').read_text() == '{}'


def check_demo_outputs(save, out):
    """What a finished demo printed (out) and left in its DEMO_SAVE_ROOT (save, a Path)."""
    assert all(re.search(rf'^=== \[\d+s\] {n}/3 ', out, re.M) for n in range(1, 4))
    # every run in its own log, one line when it ends
    assert len(glob.glob(str(save / 'logs' / '*.log'))) == 10 and out.count('] done: ') == 10

    rows = table_rows(out)
    assert set(ROWS) <= set(rows), rows
    teacher_model, teacher_acc = rows['teacher'][:2]
    summary = read_json(only(str(save / 'models' / f'{teacher_model}_*' / 'summary.json')))
    assert summary['status'] == 'finished' and summary['best_acc'] == pytest.approx(teacher_acc, abs=0.01)
    assert summary['best_acc'] >= 90.0

    # scratch, KD and CRD+MC: three seeds each, the cell is their mean ± sample std
    for row, pattern in (('student from scratch', save / 'models' / 'myresnet14_*' / 'summary.json'),
                         ('student distilled (KD)', save / 'student_model' / '*_kd_*' / 'summary.json'),
                         ('student distilled (CRD+MC)', save / 'student_model' / '*-2-2-2_*_crd_mc-*' /
                          'summary.json')):
        found = [read_json(p) for p in glob.glob(str(pattern))]
        accs = [s['best_acc'] for s in found]
        assert sorted(s['options']['seed'] for s in found) == [0, 1, 2]
        assert rows[row][1:] == (pytest.approx(statistics.mean(accs), abs=0.006),
                                 pytest.approx(statistics.stdev(accs), abs=0.006), 3)
    kd = [read_json(p) for p in glob.glob(str(save / 'student_model' / '*_kd_*' / 'summary.json'))]
    assert all((s['options']['gamma'], s['options']['alpha']) == (0.1, 0.9) for s in kd)
    # the students learn from 10 labelled digits per class, the teacher from all of them
    students = [read_json(p) for p in glob.glob(str(save / '*' / '*myresnet14*' / 'summary.json'))]
    assert students and all(s['options']['train_per_class'] == 10 for s in students)
    assert read_json(only(str(save / 'models' / f'{teacher_model}_*' / 'summary.json')))['options'][
        'train_per_class'] is None
    assert 'every student sees only 10 labelled digits per class (100 images)' in out
    helps = []
    for name, row in (('KD', 'student distilled (KD)'), ('CRD+MC', 'student distilled (CRD+MC)')):
        verdict = re.search(rf'^{re.escape(name)} vs scratch: ([+-]\d+\.\d\d) points, (within|beyond) seed '
                            rf'noise \(±(\d+\.\d\d)\): .*10 labelled digits per class', out, re.M)
        assert verdict, out[-2000:]
        delta = float(verdict.group(1))
        assert delta == pytest.approx(rows[row][1] - rows['student from scratch'][1], abs=0.02)
        helps.append(verdict.group(2) == 'beyond' and delta > 0)
    assert any(helps), out[-2000:]  # what distillation is for: a distilled student ahead beyond noise

    crd = [read_json(p) for p in glob.glob(str(save / 'student_model' / '*-2-2-2_*_crd_mc-*' / 'summary.json'))]
    assert all((s['distill'], s['mc']) == ('crd', 1) for s in crd)
    distilled, = [s for s in crd if s['options']['seed'] == 0]
    search_dir = only(str(save / 'search' / 'BCS_*'))
    search = read_json(os.path.join(search_dir, 'search.json'))
    assert search['status'] == 'finished' and len(search['candidates']) >= 2
    best = max(c['best_acc'] for c in search['candidates'])
    assert search['winner']['best_acc'] == best == pytest.approx(rows['BCS best composition (CRD+MC)'][1],
                                                                  abs=0.01)
    # the search's first candidate is the CRD+MC run of seed 0, not a run of its own
    assert search['candidates'][0]['run_dir'] == distilled['run_dir']
    with open(os.path.join(search_dir, 'search-result.txt')) as f:
        lines = f.read().splitlines()
    assert len(lines) == len(search['candidates']) + 1 and 'block_depth 2,2,2 ' in lines[0]
    assert lines[-1].startswith('winner: block_depth ')

    with open(save / 'results.md') as f:
        assert set(ROWS) <= set(table_rows(f.read()))
    run_dirs = [os.path.dirname(p) for p in glob.glob(str(save / '*' / '*' / 'summary.json'))]
    # teacher, 3 scratch, 3 KD, CRD+MC seeds 1 and 2; CRD+MC seed 0 is the search's candidate 1
    assert len(run_dirs) == 9 + len(search['candidates'])
    for folder in run_dirs:
        assert_image(os.path.join(folder, 'curves.png'))
    assert_image(os.path.join(search_dir, 'search.png'))
