"""scripts/published_results.csv and `report.py --compare`: our runs beside the published numbers."""
import csv
import json
import os
import statistics

import pytest

from helper.tools import report
from test_report import write_run

SAME = [('wrn_40_2', 'wrn_16_2'), ('wrn_40_2', 'wrn_40_1'), ('resnet56', 'resnet20'), ('resnet110', 'resnet20'),
        ('resnet110', 'resnet32'), ('resnet32x4', 'resnet8x4'), ('vgg13', 'vgg8')]
DIFFERENT = [('vgg13', 'MobileNetV2'), ('ResNet50', 'MobileNetV2'), ('ResNet50', 'vgg8'),
             ('resnet32x4', 'ShuffleV1'), ('resnet32x4', 'ShuffleV2'), ('wrn_40_2', 'ShuffleV1')]
METHODS = ['kd', 'hint', 'attention', 'similarity', 'correlation', 'vid', 'rkd', 'pkt', 'abound', 'factor',
           'fsp', 'nst', 'crd', 'crd+kd']


@pytest.fixture(scope='module')
def published():
    return report.load_published()


def test_both_repdistiller_tables_are_complete(published):
    for table, pairs in (('repdistiller_same', SAME), ('repdistiller_different', DIFFERENT)):
        rows = {(r['teacher'], r['student'], r['method']) for r in published if r['table'] == table}
        for t, s in pairs:
            # RepDistiller has no FSP for wrn_40_1 nor in the different-architecture table
            skip = {'fsp'} if table == 'repdistiller_different' or s == 'wrn_40_1' else set()
            want = {(t, s, m) for m in ['teacher', 'scratch'] + METHODS if m not in skip}
            assert want <= rows, (table, t, s, want - rows)
        assert all(r['protocol'] == 'last' for r in published if r['table'] == table)


def test_every_row_names_its_source_and_known_models(published):
    import models
    for r in published:
        assert r['source_repo'] and r['source_file'], r
        for name in (r['teacher'], r['student']):
            assert not name or name in models.model_dict, r


def test_newer_methods_cover_only_repdistiller_pairs(published):
    pairs = set(SAME) | set(DIFFERENT)
    newer = [r for r in published if r['method'] in ('dkd', 'dist', 'kd+ls', 'dkd+ls')]
    assert {r['method'] for r in newer} == {'dkd', 'dist', 'kd+ls', 'dkd+ls'}
    assert all((r['teacher'], r['student']) in pairs and r['protocol'] == 'best' for r in newer)
    keyed = {(r['teacher'], r['student'], r['method']): r for r in newer}
    assert keyed[('resnet32x4', 'resnet8x4', 'dkd')]['top1'] == 76.32          # mdistiller README
    assert keyed[('resnet32x4', 'resnet8x4', 'dist')]['std'] == 0.19           # DIST README, 76.31±0.19
    assert keyed[('resnet110', 'resnet20', 'dkd+ls')]['top1'] == 71.85         # LS README


def test_spot_values_from_the_readme(published):
    keyed = {(r['table'], r['teacher'], r['student'], r['method']): r['top1'] for r in published}
    assert keyed[('repdistiller_same', 'resnet32x4', 'resnet8x4', 'crd')] == 75.51
    assert keyed[('repdistiller_same', 'resnet110', 'resnet32', 'scratch')] == 71.14
    assert keyed[('repdistiller_different', 'vgg13', 'MobileNetV2', 'attention')] == 59.40
    assert keyed[('repdistiller_different', 'wrn_40_2', 'ShuffleV1', 'crd+kd')] == 76.27
    assert keyed[('teachers', 'ResNet50', '', 'teacher')] == 79.34


def test_verdict_threshold():
    assert report.verdict([73.5, 73.5], 73.33)[4] == 'within noise'      # 0.17 <= 0.3
    assert report.verdict([73.7, 73.7], 73.33)[4] == 'above'
    assert report.verdict([72.9, 72.9], 73.33)[4] == 'below'
    # one run has no spread: no verdict, unless the published row carries its own
    assert report.verdict([72.9], 73.33)[4] == 'one run'
    assert report.verdict([72.9], 73.33, 0.25)[4] == 'within noise'      # 0.43 <= 2 * 0.25
    assert report.verdict([72.9], 73.33, 0.19)[4] == 'below'             # 0.43 > 2 * 0.19
    # the band combines our standard error (1.0 here) with the published std
    assert report.verdict([72.0, 74.0], 75.8, 1.0)[4] == 'within noise'  # 2.8 <= 2 * sqrt(1 + 1)
    assert report.verdict([72.0, 74.0], 75.8, 0.8)[4] == 'below'         # 2.8 > 2 * sqrt(1 + 0.64)
    # a wide spread widens the band: std 1.414, n 2, band 2.0 >= |delta| 1.4
    mean, std, n, delta, word = report.verdict([72.0, 74.0], 74.4)
    assert (mean, n, word) == (73.0, 2, 'within noise') and std == pytest.approx(2 ** 0.5)
    assert delta == pytest.approx(-1.4)
    assert report.verdict([72.9, 73.1], 74.4)[4] == 'below'


def comparison_rows(text):
    lines = text.splitlines()
    start = lines.index('## Compared with the published numbers')
    rows = [[c.strip() for c in l.strip()[1:-1].split('|')] for l in lines[start:] if l.startswith('| ')]
    return {(r[1], r[2]): r for r in rows[1:]}


# The published commands (RepDistiller's scripts/run_cifar_distill.sh and train_teacher.py defaults:
# 240 epochs, lr 0.05 decayed at 150,180,210, batch 64; mdistiller's DKD for resnet32x4 -> resnet8x4).
KD_CMD = '--model_t resnet32x4 --model_s resnet8x4 --distill kd -r 0.1 -a 0.9 -b 0'
DKD_CMD = '--model_t resnet32x4 --model_s resnet8x4 --distill dkd --dkd_beta 8'
SCRATCH_CMD = '--model resnet8x4'


def recorded_options(command, seed=0):
    """The options a run made with this command records in its summary.json."""
    from helper.engine.options import finalize, options_dict, student_parser, teacher_parser
    kind = 'teacher' if command.startswith('--model ') else 'student'
    parser = teacher_parser() if kind == 'teacher' else student_parser()
    argv = command.split() + ['--seed', str(seed)] + ([] if kind == 'teacher' else ['--path_t', 't.pth'])
    return options_dict(finalize(parser.parse_args(argv), kind))


def test_compare_uses_each_published_protocol(tmp_path):
    root = str(tmp_path / 'save')
    common = dict(model_t='resnet32x4', model_s='resnet8x4', teacher_acc=79.42)
    kd = [(73.1, 73.9), (73.5, 74.2)]                  # (last, best): last within 0.3 of 73.33
    for i, (last, best) in enumerate(kd):
        write_run(root, 'student_model', f'kd_{i}', distill='kd', trial=str(i), last_acc=last, best_acc=best,
                  options=recorded_options(KD_CMD, i), **common)
    for i, (last, best) in enumerate([(74.0, 75.2), (74.3, 75.4)]):   # best vs DKD's 76.32: below
        write_run(root, 'student_model', f'dkd_{i}', distill='dkd', trial=str(i), last_acc=last,
                  best_acc=best, options=recorded_options(DKD_CMD, i), **common)
    for i, last in enumerate([73.3, 73.5]):
        write_run(root, 'models', f'scratch_{i}', kind='teacher', model_s='resnet8x4', model_t=None,
                  distill=None, teacher_acc=None, last_acc=last, best_acc=73.6,
                  options=recorded_options(SCRATCH_CMD, i))
    md, csv_path, text = report.report([root], compare_with='published')
    rows = comparison_rows(text)
    kd_row = rows[('resnet32x4 → resnet8x4', 'kd')]
    assert kd_row[3] == 'last' and kd_row[6] == '73.33' and kd_row[8] == 'within noise'
    assert kd_row[4] == report.cell([73.1, 73.5]) and kd_row[5] == report.cell([73.9, 74.2])
    assert kd_row[7] == f'{statistics.mean([73.1, 73.5]) - 73.33:+.2f}'
    dkd_row = rows[('resnet32x4 → resnet8x4', 'dkd')]
    assert dkd_row[3] == 'best' and dkd_row[6] == '76.32' and dkd_row[8] == 'below'
    assert rows[('resnet32x4 → resnet8x4', 'scratch')][8] == 'above'      # 73.4 ± 0.14 vs 72.50
    assert rows[('resnet32x4 → resnet8x4', 'teacher')][8] == 'within noise'
    with open(csv_path, newline='') as f:
        by_run = {os.path.basename(r['run']): r for r in csv.DictReader(f)}
    assert by_run['kd_0']['verdict'] == 'within noise' and by_run['kd_0']['published'] == '73.33'
    assert by_run['dkd_1']['verdict'] == 'below' and by_run['dkd_1']['published_protocol'] == 'best'
    assert by_run['scratch_0']['verdict'] == 'above'


def test_no_comparison_unless_a_pair_matches(tmp_path):
    root = str(tmp_path / 'save')
    write_run(root, 'student_model', 'kd_0', distill='kd', model_t='resnet8', model_s='resnet8')
    _, csv_path, text = report.report([root])
    assert 'Compared with the published' not in text
    with open(csv_path, newline='') as f:
        assert 'verdict' not in next(csv.reader(f))


def test_compare_with_own_csv_and_bad_file(tmp_path, capsys):
    root = str(tmp_path / 'save')
    write_run(root, 'student_model', 'kd_0', distill='kd', model_t='resnet8', model_s='resnet8', last_acc=50.0)
    mine = tmp_path / 'mine.csv'
    mine.write_text('table,teacher,student,method,top1,std,n,protocol,source_repo,source_file\n'
                    'tiny,resnet8,resnet8,kd,49.0,,,last,here,mine.csv\n')
    assert report.main([root, '--compare', str(mine)]) == 0
    assert '| tiny | resnet8 → resnet8 | kd | last | 50.00 (1) |' in capsys.readouterr().out
    assert report.main([root, '--compare', str(tmp_path / 'missing.csv')]) == 2
    assert 'cannot read published results' in capsys.readouterr().err


def test_a_run_off_the_recipe_gets_no_verdict(tmp_path):
    """A 1-epoch run of the table's KD command and a KD run with other weights are shown with their
    first difference and no verdict, in results.md and results.csv alike."""
    root = str(tmp_path / 'save')
    common = dict(model_t='resnet32x4', model_s='resnet8x4', teacher_acc=79.42, distill='kd')
    write_run(root, 'student_model', 'smoke', last_acc=20.0, options=recorded_options(KD_CMD + ' --epochs 1'),
              **common)
    write_run(root, 'student_model', 'weights', last_acc=73.0,
              options=recorded_options('--model_t resnet32x4 --model_s resnet8x4 --distill kd -r 1 -a 1 -b 0 '
                                       '--kd_T 1'), **common)
    write_run(root, 'student_model', 'old', last_acc=73.0, options={'alpha': 0.9, 'beta': 0}, **common)
    _, csv_path, text = report.report([root], compare_with='published')
    lines = [l for l in text.splitlines() if l.startswith('| repdistiller_same | resnet32x4 → resnet8x4 | kd |')]
    verdicts = sorted(l.split('|')[9].strip() for l in lines)
    assert verdicts == ['not comparable: epochs 1 ≠ 240', 'not comparable: gamma 1.0 ≠ 0.1',
                        'not comparable: gamma not recorded']
    assert all(l.split('|')[8].strip() == '' for l in lines)  # no Δ either
    assert '0 within noise, 0 above, 0 below, 0 one run; 3 not comparable.' in text
    assert 'teacher |' not in text  # no pair has a comparable run: no teacher row
    with open(csv_path, newline='') as f:
        by_run = {os.path.basename(r['run']): r['verdict'] for r in csv.DictReader(f)}
    assert by_run['smoke'] == 'not comparable: epochs 1 ≠ 240'


def test_teacher_rows_once_per_teacher_and_only_where_a_pair_has_comparable_runs(tmp_path):
    root = str(tmp_path / 'save')
    for student in ('resnet8x4', 'ShuffleV1', 'ShuffleV2'):  # one resnet32x4 checkpoint, three pairs
        write_run(root, 'student_model', f'kd_{student}', distill='kd', model_t='resnet32x4', model_s=student,
                  teacher_acc=79.42, last_acc=70.0,
                  options=recorded_options(f'--model_t resnet32x4 --model_s {student} --distill kd '
                                           '-r 0.1 -a 0.9 -b 0'))
    write_run(root, 'student_model', 'kd_smoke', distill='kd', model_t='resnet110', model_s='resnet20',
              teacher_acc=74.31, last_acc=20.0,
              options=recorded_options('--model_t resnet110 --model_s resnet20 --distill kd -r 0.1 -a 0.9 -b 0 '
                                       '--epochs 1'))
    _, _, text = report.report([root], compare_with='published')
    teacher_rows = [l for l in text.splitlines() if l.startswith('| ') and '| teacher |' in l]
    assert len(teacher_rows) == 1 and 'resnet32x4 →' in teacher_rows[0], teacher_rows
    kd_rows = [l for l in text.splitlines() if '| kd |' in l and 'resnet32x4 →' in l]
    assert len(kd_rows) == 3 and all('| one run |' in l for l in kd_rows)   # n = 1, no published std
    assert '1 within noise, 0 above, 0 below, 3 one run; 1 not comparable.' in text
    assert report.NOISE_RULE in text


def test_foreign_old_and_half_written_folders_never_stop_the_comparison(tmp_path):
    root = tmp_path / 'save'
    write_run(str(root), 'student_model', 'kd_0', distill='kd', model_t='resnet32x4', model_s='resnet8x4',
              options=recorded_options(KD_CMD))
    half = root / 'student_model' / 'half'
    half.mkdir(parents=True)
    (half / 'summary.json').write_text('{"status": "finished", "model_s": "resn')
    (root / 'student_model' / 'notes').mkdir()
    (root / 'student_model' / 'notes' / 'x.pth').write_bytes(b'not a checkpoint')
    old = root / 'models' / 'old'
    old.mkdir(parents=True)
    (old / 'summary.json').write_text(json.dumps({'status': 'finished', 'model_s': 'resnet8x4', 'dataset': 'cifar100',
                                                  'best_acc': 1.0, 'last_acc': 1.0}))
    before = {p: p.read_bytes() for p in root.rglob('*') if p.is_file()}
    assert report.main([str(root), '--compare', 'published']) == 0
    assert all(p.read_bytes() == b for p, b in before.items())
    with open(root / 'results.md') as f:
        text = f.read()
    assert 'not comparable: options not recorded' in text   # the older version's run
    assert 'summary.json unreadable' in text and 'checkpoints only' in text


def test_mdistiller_rows_kd_dot_reviewkd_ofd(published):
    import torch
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'golden_dot.pt')
    readme = torch.load(fixture, weights_only=True)['published_cifar']   # mdistiller README, DOT section
    keyed = {(r['teacher'], r['student'], r['method']): r for r in published if r['table'] == 'dot'}
    for key, (t, s) in {'resnet32x4_resnet8x4': ('resnet32x4', 'resnet8x4'), 'vgg13_vgg8': ('vgg13', 'vgg8'),
                        'resnet32x4_shufflev2': ('resnet32x4', 'ShuffleV2')}.items():
        assert keyed[(t, s, 'kd')]['top1'] == readme[key]['kd']
        assert keyed[(t, s, 'kd+dot')]['top1'] == readme[key]['kd_dot']
    assert all(r['protocol'] == 'best' and r['source_repo'] == 'megvii-research/mdistiller' for r in keyed.values())
    feature = [r for r in published if r['method'] in ('reviewkd', 'ofd')]
    assert {r['table'] for r in feature} == {'reviewkd_ofd_same', 'reviewkd_ofd_different'}
    assert all(r['source_repo'].startswith('arXiv:') and r['protocol'] == 'best' for r in feature)
    by = {(r['teacher'], r['student'], r['method']): r['top1'] for r in feature}
    assert by[('resnet32x4', 'resnet8x4', 'reviewkd')] == 75.63 and by[('resnet32x4', 'ShuffleV2', 'ofd')] == 76.82
