"""scripts/published_results.csv and `report.py --compare`: our runs beside the published numbers."""
import csv
import os
import statistics

import pytest

import report
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
    assert report.verdict([73.5], 73.33)[4] == 'within noise'      # 0.17 <= 0.3
    assert report.verdict([73.7], 73.33)[4] == 'above'
    assert report.verdict([72.9], 73.33)[4] == 'below'
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


def test_compare_uses_each_published_protocol(tmp_path):
    root = str(tmp_path / 'save')
    common = dict(model_t='resnet32x4', model_s='resnet8x4', teacher_acc=79.42)
    kd = [(73.1, 73.9), (73.5, 74.2)]                  # (last, best): last within 0.3 of 73.33
    for i, (last, best) in enumerate(kd):
        write_run(root, 'student_model', f'kd_{i}', distill='kd', trial=str(i), last_acc=last, best_acc=best,
                  options={'alpha': 0.9, 'beta': 0}, **common)
    for i, (last, best) in enumerate([(74.0, 75.2), (74.3, 75.4)]):   # best vs DKD's 76.32: below
        write_run(root, 'student_model', f'dkd_{i}', distill='dkd', trial=str(i), last_acc=last,
                  best_acc=best, options={'alpha': 0, 'beta': 8}, **common)
    write_run(root, 'models', 'scratch_0', kind='teacher', model_s='resnet8x4', model_t=None, distill=None,
              teacher_acc=None, last_acc=73.4, best_acc=73.6)
    md, csv_path, text = report.report([root], compare_with='published')
    rows = comparison_rows(text)
    kd_row = rows[('resnet32x4 → resnet8x4', 'kd')]
    assert kd_row[3] == 'last' and kd_row[6] == '73.33' and kd_row[8] == 'within noise'
    assert kd_row[4] == report.cell([73.1, 73.5]) and kd_row[5] == report.cell([73.9, 74.2])
    assert kd_row[7] == f'{statistics.mean([73.1, 73.5]) - 73.33:+.2f}'
    dkd_row = rows[('resnet32x4 → resnet8x4', 'dkd')]
    assert dkd_row[3] == 'best' and dkd_row[6] == '76.32' and dkd_row[8] == 'below'
    assert rows[('resnet32x4 → resnet8x4', 'scratch')][8] == 'above'      # 73.4 vs 72.50
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
