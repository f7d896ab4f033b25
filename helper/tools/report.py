"""Collect every run's summary.json under one or more folders into a benchmark table.

    python report.py save/ [more folders] [--out DIR] [--metric last|best] [--plot]
                     [--compare published|none|CSV]

Writes DIR/results.md (the CIFAR-100 benchmark layout: one column per teacher -> student
pair, one row per method, cells "mean ± sample std (n trials)") and DIR/results.csv (one row
per run, incomplete ones included). --plot also draws one method-comparison figure per pair,
and the curves/search plots of runs and searches that lack an up-to-date one. Runs that match a
published (teacher, student, method) are compared with scripts/published_results.csv.
"""
import argparse
import csv
import io
import json
import math
import os
import statistics
import sys

from distiller_zoo import METHODS
from helper.runs.checkpoint import WriteError, write_text
from helper.errors import UsageError
from helper.tools.recipe import ROOT
from helper.runs.run_folder import LOG, SUMMARY, RunFolder
from helper.runs.runlock import shown_status

# Rows in the published table's order (RepDistiller, CRD-EMKD), then the other registered methods;
# unknown --distill names follow alphabetically.
PUBLISHED_ORDER = ['kd', 'hint', 'attention', 'similarity', 'correlation', 'vid', 'rkd', 'pkt',
                   'abound', 'factor', 'fsp', 'nst', 'crd']
METHOD_ORDER = PUBLISHED_ORDER + [name for name in METHODS if name not in PUBLISHED_ORDER]
PAPER_NAMES = {name: METHODS[name].label for name in METHOD_ORDER}
REQUIRED = ['model_s', 'dataset', 'best_acc', 'last_acc']
CSV_FIELDS = ['run', 'status', 'row', 'kind', 'dataset', 'model_t', 'model_s', 'block_depth',
              'distill', 'alpha', 'beta', 'mc', 'mc_weight', 'trial', 'search', 'search_role',
              'best_acc', 'best_epoch', 'last_acc', 'teacher_acc', 'params', 'extra_params', 'epochs',
              'epochs_done', 'wall_time_s', 'note']


# ---------------------------------------------------------------- collecting

def collect(roots):
    """Walk the folders: (finished runs, incomplete runs, searches), each a list of dicts.

    A run is a folder with summary.json; one with log.csv or *.pth but no summary, or with a
    status other than 'finished', is incomplete. A search is a folder with search.json.
    Every dict has 'path' (as shown: below the root as given) and 'real' (resolved path).
    """
    runs, incomplete, searches, seen = [], [], [], set()
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f'{root} is not a folder')
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            real = os.path.realpath(folder)
            if real in seen:  # overlapping roots
                continue
            seen.add(real)
            shown = os.path.normpath(folder)
            if 'search.json' in files:
                searches.append(_read_search(folder, shown, real))
            if SUMMARY in files:
                run, problem = _read_summary(folder)
                run.update(path=shown, real=real)
                if run.get('status') == 'running':
                    run['status'] = shown_status(folder, 'running')
                    if run['status'] != 'running':
                        problem = 'no live process holds the run (killed, or its node was lost)'
                if problem:
                    incomplete.append(dict(run, note=problem))
                else:
                    runs.append(run)
            elif LOG in files or any(f.endswith('.pth') for f in files):
                incomplete.append(_from_log(folder, shown, real, has_log=LOG in files))
    return runs, incomplete, searches


def _read_summary(folder):
    """(summary dict, problem or None)."""
    try:
        summary = RunFolder(folder).read_summary()
    except (OSError, ValueError) as e:
        return {'status': 'unreadable'}, f'{SUMMARY} unreadable: {e}'
    status = summary.get('status', 'unknown')
    if status != 'finished':
        return summary, f'status {status}'
    missing = [k for k in REQUIRED if summary.get(k) is None]
    if missing:
        return summary, 'summary.json lacks ' + ', '.join(missing)
    return summary, None


def _from_log(folder, shown, real, has_log):
    run = {'status': 'no summary', 'path': shown, 'real': real}
    if not has_log:
        run['note'] = 'checkpoints only (no log.csv, no summary.json)'
        return run
    try:
        rows = RunFolder(folder).read_log()
    except (OSError, csv.Error) as e:
        run['note'] = f'{LOG} unreadable: {e}'
        return run
    run['epochs_done'] = len(rows)
    if rows:
        run['last_acc'] = _number(rows[-1].get('test_acc'))
        accs = [a for a in (_number(r.get('test_acc')) for r in rows) if a is not None]
        run['best_acc'] = max(accs) if accs else None
    run['note'] = 'no summary.json'
    return run


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _read_search(folder, shown, real):
    try:
        with open(os.path.join(folder, 'search.json')) as f:
            search = json.load(f)
        if not isinstance(search, dict):
            raise ValueError('not an object')
    except (OSError, ValueError) as e:
        return {'path': shown, 'real': real, 'error': f'search.json unreadable: {e}'}
    return dict(search, path=shown, real=real)


def link_searches(runs, incomplete, searches):
    """Find each search's candidate, winner and final runs among the collected runs.

    Marks runs with 'search' (its path) and 'search_role' (candidate/winner/final); candidates of
    a search with --search_epochs trained a shortened schedule and get 'shortened'. Each search
    gets 'result_run': the final retrain of the winner if any, else the winner's run (or None).
    """
    by_real, by_tail = {}, {}
    for run in runs + incomplete:
        keys = {run['real']}
        if isinstance(run.get('run_dir'), str):
            keys.add(os.path.realpath(run['run_dir']))
        for key in keys:
            by_real[key] = run
        by_tail.setdefault(_tail(run['real']), []).append(run)

    def find(record, search):
        run_dir = (record or {}).get('run_dir')
        if not isinstance(run_dir, str) or not run_dir:
            return None
        for guess in (run_dir, os.path.join(search['real'], run_dir)):
            if os.path.realpath(guess) in by_real:
                return by_real[os.path.realpath(guess)]
        # Written relative to another working directory: accept a unique match on the tail.
        matches = by_tail.get(_tail(run_dir), [])
        return matches[0] if len(matches) == 1 else None

    for search in searches:
        if 'error' in search:
            continue
        found = []
        for candidate in search.get('candidates') or []:
            run = find(candidate, search)
            if run is not None:
                run.update(search=search['path'], search_role='candidate')
                if search.get('search_epochs') is not None:
                    run['shortened'] = True
                found.append(run)
        winner, final = find(search.get('winner'), search), find(search.get('final'), search)
        if winner is not None:
            winner['search_role'] = 'winner'
        if final is not None:
            final.update(search=search['path'], search_role='final')
        search['result_run'] = final if search.get('final') else winner
        for run in [final, winner] + found:  # older search.json files do not say the dataset
            if run is not None and run.get('dataset'):
                search.setdefault('dataset', run['dataset'])
                break


def search_result(search, key):
    """(winner record, its accuracy under key): the final retrain's if any, else the winner's."""
    record = search.get('final') or search.get('winner') or {}
    run = search.get('result_run')
    if run is not None and run.get('status') == 'finished' and run.get(key) is not None:
        return record, run[key]
    return record, record.get(key)


def _tail(path):
    parts = os.path.normpath(path).split(os.sep)
    return tuple(parts[-2:])


# ---------------------------------------------------------------- labelling

def _depth_text(depth):
    return '[' + ','.join(str(d) for d in depth) + ']'


class DepthRule:
    """Decides whether a run's block_depth is its model's own (then the label omits it)."""

    def __init__(self):
        self._cache = {}

    def is_default(self, model, depth):
        if not depth:
            return True
        if model not in self._cache:
            self._cache[model] = self._base_depth(model)
        base = self._cache[model]
        return base is not None and list(base) == list(depth)

    @staticmethod
    def _base_depth(model):
        try:  # imported lazily: models pulls in torch
            from models import base_depth
            return base_depth(model)
        except Exception:  # unknown name or models unavailable: show the depth
            return None


def method_label(distill, mc, alpha, depth=None, bcs=False):
    """'crd', 'crd+kd', 'crd+MC', 'kd+MC [3,7,2]', 'crd+MC+BCS [3,7,2]'; 'scratch' if nothing."""
    parts = [distill] if distill else []
    if distill and distill != 'kd' and (alpha or 0) > 0:
        parts.append('kd')  # e.g. the published CRD+KD (-a 1)
    if mc:
        parts.append('MC')
    if bcs:
        parts.append('BCS')
    label = '+'.join(parts) or 'scratch'
    return f'{label} {_depth_text(depth)}' if depth else label


def _sort_key(label):
    """Published method order; per method: plain, +kd, compositions, BCS; MC after plain."""
    head, _, depth = label.partition(' ')
    parts = head.split('+')
    method = parts[0]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, method, 'kd' in parts[1:], 'BCS' in parts, depth, 'MC' in parts, label)


def _options(run):
    options = run.get('options')
    return options if isinstance(options, dict) else {}


# ---------------------------------------------------------------- tabulating

def _search_winners(searches, key):
    """{(dataset, teacher, student, method label): {winning block_depth}} of the searches."""
    winners = {}
    for search in searches:
        record, _ = search_result(search, key)
        if 'error' not in search and record.get('block_depth'):
            method = method_label(search.get('distill'), search.get('mc'), _options(search).get('alpha'))
            where = (search.get('dataset') or 'cifar100', search.get('model_t'), search.get('model_s'), method)
            winners.setdefault(where, set()).add(tuple(record['block_depth']))
    return winners


def build_tables(runs, searches, metric, depth_rule=None):
    """Group accuracies: {dataset: table}; table has 'columns' [(teacher, student)],
    'cells' {(row label, column): [acc]}, 'teacher'/'scratch' {column: [acc]},
    'teacher_from_students' {column: bool}, 'models' {model label: [acc]} (scratch runs).

    A student run whose composition a finished search of the same pair and method picked is a
    '+BCS [d]' run (the search's own run and any further trials of that composition). Other
    search candidates, and all candidates trained on a shortened schedule, stay out of the table.
    Every finished run gets its 'row' label (shown in results.csv)."""
    depth_rule = depth_rule or DepthRule()
    key = f'{metric}_acc'
    tables = {}

    def table(dataset):
        return tables.setdefault(dataset, dict(columns=set(), cells={}, teacher={}, scratch={},
                                               teacher_from_students={}, models={}))

    winners = _search_winners(searches, key)
    scratch_runs = []
    for run in runs:
        depth = run.get('block_depth')
        default = depth_rule.is_default(run['model_s'], depth)
        suffix = ('' if default else f' {_depth_text(depth)}') + setting_tag(run)
        if run.get('shortened'):
            run['row'] = 'BCS candidate (shortened schedule)'
            continue
        if run.get('kind') == 'teacher' or (not run.get('distill') and not run.get('mc')):
            run['row'] = 'scratch' + suffix
            scratch_runs.append((run, default and not setting_tag(run)))
            table(run['dataset'])['models'].setdefault(run['model_s'] + suffix, []).append(run[key])
            continue
        column = (run.get('model_t') or '?', run['model_s'])
        method = method_label(run.get('distill'), run.get('mc'), _options(run).get('alpha'))
        if depth and tuple(depth) in winners.get((run['dataset'], *column, method), ()):
            run['row'] = method_label(run.get('distill'), run.get('mc'), _options(run).get('alpha'),
                                      depth, bcs=True)
        elif run.get('search_role') == 'candidate' and not default:
            run['row'] = 'BCS candidate'
            continue
        else:
            run['row'] = method_label(run.get('distill'), run.get('mc'), _options(run).get('alpha'),
                                      None if default else depth)
        run['row'] += setting_tag(run)
        t = table(run['dataset'])
        t['columns'].add(column)
        t['cells'].setdefault((run['row'], column), []).append(run[key])

    for search in searches:  # winners whose run folder is not among the collected runs
        record, acc = search_result(search, key)
        counted = search.get('result_run') or {}
        if 'error' in search or acc is None or 'BCS' in counted.get('row', ''):
            continue
        label = method_label(search.get('distill'), search.get('mc'), _options(search).get('alpha'),
                             record.get('block_depth'), bcs=True)
        column = (search.get('model_t') or '?', search.get('model_s') or '?')
        t = table(search.get('dataset') or 'cifar100')
        t['columns'].add(column)
        t['cells'].setdefault((label, column), []).append(acc)

    for dataset, t in tables.items():
        t['columns'] = sorted(t['columns'])
        for column in t['columns']:
            teacher, student = column
            for run, default in scratch_runs:
                if run['dataset'] != dataset or not default:
                    continue
                if run['model_s'] == teacher and run.get('kind') == 'teacher':
                    t['teacher'].setdefault(column, []).append(run[key])
                if run['model_s'] == student:
                    t['scratch'].setdefault(column, []).append(run[key])
            if column not in t['teacher']:  # pretrained teacher: use what the students measured
                measured = {r['teacher_acc'] for r in runs if r['dataset'] == dataset
                            and (r.get('model_t'), r['model_s']) == column
                            and r.get('teacher_acc') is not None}
                if measured:
                    t['teacher'][column] = sorted(measured)
                    t['teacher_from_students'][column] = True
    return tables


def setting_tag(run):
    """' (crop)', ' (10/class)': data settings other than the dataset's default, so runs made
    with other inputs never share a cell."""
    options, tags = _options(run), []
    if run.get('dataset') == 'tiny_imagenet' and options.get('tiny_imagenet_transform', 'emkd') != 'emkd':
        tags.append(options['tiny_imagenet_transform'])
    if run.get('dataset') == 'imagenet' and options.get('imagenet_transform', 'standard') != 'standard':
        tags.append(f"{options['imagenet_transform']} transform")
    if options.get('train_per_class'):
        tags.append(f"{options['train_per_class']}/class")
    return f" ({', '.join(tags)})" if tags else ''


def cell(values):
    """'71.23 ± 0.45 (3)': mean ± sample std (n - 1 denominator), n trials; '71.23 (1)'."""
    if not values:
        return ''
    mean = statistics.mean(values)
    if len(values) == 1:
        return f'{mean:.2f} (1)'
    return f'{mean:.2f} ± {statistics.stdev(values):.2f} ({len(values)})'


def markdown(tables, searches, incomplete, metric, figures=None):
    figures = figures or {}
    which = 'last-epoch' if metric == 'last' else 'best-epoch'
    lines = ['# Results', '',
             f'Top-1 test accuracy (%) at the {which} checkpoint. Cells: mean ± sample standard '
             'deviation (n − 1 denominator) over trials, (number of trials).', '']
    for dataset in sorted(tables):
        lines += _dataset_section(dataset, tables[dataset], figures)
    lines += ['Row names are --distill methods: ' +
              ', '.join(f'{k} = {v}' for k, v in PAPER_NAMES.items() if k.upper() != v) +
              '. +kd: with the KD loss (-a > 0); +MC: milestone checking; [3,7,2]: a block '
              'composition other than the model\'s own; +BCS [..]: runs of the composition a finished block '
              'composition search picked for that pair and method (its result and any further '
              'trials); the other search candidates are not in the table.', '']
    if searches:
        lines += _searches_section(searches, metric)
    lines += _incomplete_section(searches, incomplete)
    return '\n'.join(lines) + '\n'


def _dataset_section(dataset, t, figures):
    lines = [f'## {dataset}', '']
    if t['columns']:
        cols = t['columns']
        rows = [['Teacher'] + [c[0] for c in cols], None,
                ['Student'] + [c[1] for c in cols],
                ['Teacher acc'] + [cell(t['teacher'].get(c, [])) +
                                   (' †' if t['teacher_from_students'].get(c) else '')
                                   for c in cols],
                ['Student (scratch)'] + [cell(t['scratch'].get(c, [])) for c in cols]]
        labels = sorted({label for label, _ in t['cells']}, key=_sort_key)
        rows += [[label] + [cell(t['cells'].get((label, c), [])) for c in cols]
                 for label in labels]
        lines += _md_table(rows)
        lines += ['']
        if any(t['teacher_from_students'].values()):
            lines += ['† no teacher run found: the teacher accuracy the student runs '
                      'measured (one value per distinct teacher checkpoint).', '']
        for c in cols:
            if (dataset, c) in figures:
                lines += [f'![{c[0]} -> {c[1]}]({figures[(dataset, c)]})', '']
    if t['models']:
        lines += ['Models trained from scratch (teacher runs and students without '
                  'distillation):', '']
        lines += _md_table([['Model', 'Accuracy'], None] +
                           [[m, cell(v)] for m, v in sorted(t['models'].items())])
        lines += ['']
    return lines


def _searches_section(searches, metric):
    rows = [['Search', 'Teacher -> student', 'Method', 'Status', 'Visited', 'Winner', 'Params',
             f'Winner acc ({metric})', 'Device hours'], None]
    for search in searches:
        if 'error' in search:
            rows.append([search['path'], '', '', search['error'], '', '', '', '', ''])
            continue
        winner = search.get('winner') or {}
        record, acc = search_result(search, f'{metric}_acc')
        hours = search.get('device_hours')
        rows.append([search['path'], f"{search.get('model_t')} -> {search.get('model_s')}",
                     method_label(search.get('distill'), search.get('mc'),
                                  _options(search).get('alpha')),
                     _search_status(search),
                     str(len(search.get('candidates') or [])),
                     _depth_text(winner['block_depth']) if winner.get('block_depth') else 'none yet',
                     f"{winner['params']:,}" if isinstance(winner.get('params'), int) else '',
                     (f'{acc:.2f}' if acc is not None else '') + _search_score(search, winner, metric),
                     f'{hours:.2f}' if isinstance(hours, (int, float)) else ''])
    return ['## Block composition searches', ''] + _md_table(rows) + ['']


def _incomplete_section(searches, incomplete):
    lines = ['## Incomplete runs', '']
    open_searches = [s for s in searches if 'error' in s or _search_status(s) != 'finished']
    if not (incomplete or open_searches):
        return lines + ['None.']
    rows = [['Run', 'Status', 'Epochs', 'Last test acc', 'Note'], None]
    for run in incomplete:
        epochs = '' if run.get('epochs_done') is None else str(run['epochs_done'])
        if epochs and run.get('epochs'):
            epochs += f"/{run['epochs']}"
        acc = run.get('last_acc')
        rows.append([run['path'], run.get('status', ''), epochs,
                     f'{acc:.2f}' if isinstance(acc, (int, float)) else '', run.get('note', '')])
    for search in open_searches:
        note = search.get('error') or f"search: {len(search.get('candidates') or [])} candidates so far"
        rows.append([search['path'], _search_status(search), '', '', note])
    return lines + _md_table(rows)


def _search_score(search, winner, metric):
    """Beside a retrained winner's accuracy: the label, and the search's own score of it."""
    if not search.get('final'):
        return ''
    score = winner.get(f'{metric}_acc')
    n = search.get('search_epochs')
    epochs = f' on {n} epoch{"s" if n != 1 else ""}' if n is not None else ''
    return ' (retrained' + (f'; search score {score:.2f}{epochs})' if score is not None else ')')


def _search_status(search):
    if 'error' in search:
        return 'unreadable'
    return search.get('status') or ('finished' if search.get('winner') else 'running')


def _md_table(rows):
    """rows: lists of cells; None marks the header separator (after the first row)."""
    width = len(rows[0])
    return ['|' + '---|' * width if row is None else
            '| ' + ' | '.join(str(c).replace('|', '\\|') for c in row) + ' |' for row in rows]


def write_csv(path, runs, incomplete, extra_fields=()):
    fields = CSV_FIELDS + list(extra_fields)
    f = io.StringIO()  # the whole table, then one atomic write: a failed write keeps the previous file
    writer = csv.DictWriter(f, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    for run in runs + incomplete:
        options = _options(run)
        row = {k: run.get(k) for k in fields if k in run}
        row.update(run=run['path'], alpha=options.get('alpha'), beta=options.get('beta'),
                   mc_weight=options.get('mc_weight'))
        if isinstance(run.get('block_depth'), list):
            row['block_depth'] = ','.join(map(str, run['block_depth']))
        writer.writerow({k: '' if v is None else v for k, v in row.items()
                         if k in fields})
    write_text(f.getvalue(), path)


# ---------------------------------------------------------------- published numbers

PUBLISHED_CSV = os.path.join(ROOT, 'scripts', 'published_results.csv')
COMPARE_FIELDS = ['published', 'published_protocol', 'published_table', 'ours_mean', 'ours_n', 'delta',
                  'verdict']


def load_published(path=PUBLISHED_CSV):
    """Rows of published_results.csv: dicts with top1/std as floats (None when blank)."""
    try:
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UsageError(f'cannot read published results {path}: {e.strerror}') from None
    need = {'table', 'teacher', 'student', 'method', 'top1', 'protocol'}
    if not rows or not need <= set(rows[0]):
        raise UsageError(f'{path} needs the columns {", ".join(sorted(need))}')
    for row in rows:
        row['top1'], row['std'] = _number(row['top1']), _number(row.get('std'))
        if row['top1'] is None or row['protocol'] not in ('last', 'best'):
            raise UsageError(f'{path}: bad top1 or protocol in row {row}')
    return rows


def published_by_pair(rows, tables=None):
    """{(teacher, student, method): row}, the first row where a pair appears in several tables."""
    out = {}
    for row in rows:
        if row['student'] and (tables is None or row['table'] in tables):
            out.setdefault((row['teacher'], row['student'], row['method']), row)
    return out


NOISE_RULE = ('Within noise: |Δ| ≤ max(0.3, 2·√(s²/n + p²)), s our sample std over n runs, p the published '
              'std where the row gives one; one run without a published std gets no verdict ("one run").')


def verdict(ours, published, published_std=None):
    """(mean, sample std, n, delta, verdict): 'within noise' when |delta| is inside NOISE_RULE's
    band, else 'above' or 'below'; 'one run' when n = 1 and the row has no spread of its own."""
    n = len(ours)
    mean = statistics.mean(ours)
    std = statistics.stdev(ours) if n > 1 else 0.0
    delta = mean - published
    if n == 1 and published_std is None:
        return mean, std, n, delta, 'one run'
    band = max(0.3, 2 * math.sqrt(std ** 2 / n + (published_std or 0.0) ** 2))
    if abs(delta) <= band + 1e-9:
        word = 'within noise'
    else:
        word = 'above' if delta > 0 else 'below'
    return mean, std, n, delta, word


def comparison_label(run):
    """A run's row label with '+ls' when it standardized the logits (--logit_stand), '+dot' when it
    trained with --optimizer dot."""
    label = run.get('row', '')
    label = label + '+ls' if label and _options(run).get('logit_stand') else label
    return label + '+dot' if label and _options(run).get('optimizer') == 'dot' else label


def not_comparable(run, row):
    """Why the run does not follow the row's published recipe ('epochs 1 ≠ 240'), or None."""
    from helper.engine.identity import first_difference
    from helper.tools.recipe import COMPARED, REQUIRED, recipe_options

    saved = _options(run)
    if not saved:
        return 'options not recorded'
    try:
        wanted = recipe_options(row)
    except UsageError as e:
        return f'no recipe in this build ({e})'
    if saved.get('extend'):
        return f"extended to {saved['extend']} epochs"
    return first_difference(saved, wanted, COMPARED, REQUIRED)


def _group(runs, published, dataset):
    """{(teacher, student, method): [run]} of the runs that match a published row's pair and method."""
    groups = {}
    pairs = {key[:2] for key in published}
    ran = {(r.get('model_t'), r['model_s']) for r in runs if r.get('model_t')}
    for run in runs:
        if run.get('dataset') != dataset or run.get('row') is None or ' ' in run['row']:
            continue  # other data, BCS candidates, non-default compositions
        if run['row'] == 'scratch':
            # under the pairs distilled into this student; under all of its pairs when none was
            mine = [p for p in pairs if p[1] == run['model_s']]
            for pair in [p for p in mine if p in ran] or mine:
                groups.setdefault((*pair, 'scratch'), []).append(run)
        elif run.get('model_t'):
            groups.setdefault((run['model_t'], run['model_s'], comparison_label(run)), []).append(run)
    return groups


def compare(runs, published, dataset='cifar100'):
    """Our runs next to the published rows of the same (teacher, student, method).

    Only runs that follow the row's recipe (helper.tools.recipe) get a verdict; the others of that row
    are shown as 'not comparable: <first difference>'. Teacher rows: the accuracy the comparable
    student runs of that pair measured of their checkpoint, once per teacher. Each comparison
    uses the published protocol's accuracy; both of ours are kept. Returns a list of dicts, marks
    runs with their comparison fields (for results.csv).
    """
    groups = _group(runs, published, dataset)
    out, comparable_pairs = [], {}
    for key, row in published.items():
        if key[2] == 'teacher' or not groups.get(key):
            continue
        good, other = [], {}
        for run in groups[key]:
            why = not_comparable(run, row)
            if why is None:
                good.append(run)
            else:
                other.setdefault(why, []).append(run)
        if good:
            out.append(_item(key, row, good))
            if key[2] != 'scratch':
                comparable_pairs.setdefault(key[:2], []).extend(good)
        for why, members in other.items():
            out.append(_item(key, row, members, f'not comparable: {why}'))
    teachers = set()
    for key, row in published.items():
        students = comparable_pairs.get(key[:2])
        if key[2] != 'teacher' or not students or key[0] in teachers:
            continue
        values = sorted({r['teacher_acc'] for r in students if r.get('teacher_acc') is not None})
        if values:  # one value per distinct checkpoint: evaluating it is deterministic
            teachers.add(key[0])
            out.append(_item(key, row, [], values=values))
    return out


def _item(key, row, members, word=None, values=None):
    """One comparison line; marks its runs with the comparison fields."""
    teacher, student, method = key
    last = values or [r['last_acc'] for r in members]
    best = values or [r['best_acc'] for r in members]
    ours = last if row['protocol'] == 'last' else best
    # a teacher row evaluates fixed checkpoints: no seed noise, only the 0.3 floor
    spread = row.get('std') if row.get('std') is not None or values is None else 0.0
    mean, std, n, delta, verdict_word = verdict(ours, row['top1'], spread)
    word = word or verdict_word
    item = dict(table=row['table'], teacher=teacher, student=student, method=method,
                protocol=row['protocol'], published=row['top1'], published_std=row.get('std'),
                last=last, best=best, mean=mean, std=std, n=n, delta=delta, verdict=word,
                source=row.get('source_repo', ''))
    for run in members:
        run.update(published=row['top1'], published_protocol=row['protocol'],
                   published_table=row['table'], ours_mean=round(mean, 4), ours_n=n,
                   delta=round(delta, 4), verdict=word)
    return item


def comparison_markdown(items):
    """The '## Compared with the published numbers' section (empty list when nothing matched)."""
    if not items:
        return []
    rows = [['Table', 'Teacher → student', 'Method', 'Protocol', 'Ours (last)', 'Ours (best)',
             'Published', 'Δ', 'Verdict', 'Source'], None]
    for it in sorted(items, key=lambda i: (i['table'], i['teacher'], i['student'], _method_rank(i['method']),
                                           i['verdict'].startswith('not comparable'))):
        published = f"{it['published']:.2f}"
        if it['published_std'] is not None:
            published += f" ± {it['published_std']:.2f}"
        fair = not it['verdict'].startswith('not comparable')
        rows.append([it['table'], f"{it['teacher']} → {it['student']}", it['method'], it['protocol'],
                     cell(it['last']), cell(it['best']), published, f"{it['delta']:+.2f}" if fair else '',
                     it['verdict'], it['source']])
    words = ('within noise', 'above', 'below', 'one run')
    counts = {w: sum(1 for it in items if it['verdict'] == w) for w in words}
    other = sum(1 for it in items if it['verdict'].startswith('not comparable'))
    return ['## Compared with the published numbers', '',
            'Each comparison uses the accuracy of the published protocol (last or best epoch); Δ is '
            'our mean minus the published value. Only runs that follow the row\'s published recipe '
            '(epochs, schedule, learning rate, batch size, weights and method settings) get a verdict; '
            'the others are "not comparable" with their first difference. ' + NOISE_RULE + ' Teacher '
            'rows: the accuracy the comparable student runs measured of their teacher checkpoint (no seed '
            'noise: within 0.3), once per teacher.', '',
            *_md_table(rows), '',
            f"{counts['within noise']} within noise, {counts['above']} above, {counts['below']} below, "
            f"{counts['one run']} one run; {other} not comparable.", '']


def _method_rank(method):
    order = ['teacher', 'scratch'] + METHOD_ORDER
    head = method.split('+')[0]
    return (order.index(head) if head in order else len(order), method)


# ---------------------------------------------------------------- plots

def draw_plots(tables, runs, incomplete, searches, out_dir, metric):
    """Method figures per pair into out_dir; curves/search plots where missing or stale.
    Returns {(dataset, column): figure file name relative to out_dir}."""
    from helper.tools import plots

    figures = {}
    for dataset, t in tables.items():
        for column in t['columns']:
            values = {label: t['cells'][(label, c)]
                      for label, c in sorted(t['cells'], key=lambda k: _sort_key(k[0]))
                      if c == column}
            name = f'methods_{dataset}_{column[0]}_{column[1]}.png'.replace(os.sep, '_')
            plots.plot_methods(values, os.path.join(out_dir, name),
                               title=f'{dataset}: {column[0]} -> {column[1]} ({metric} epoch)',
                               teacher_acc=_mean(t['teacher'].get(column)),
                               scratch_acc=_mean(t['scratch'].get(column)))
            figures[(dataset, column)] = name
    for run in runs + incomplete:
        _refresh(plots.plot_run, run['real'], 'log.csv', 'curves.png')
    for search in searches:
        if 'error' not in search and search.get('candidates'):
            _refresh(plots.plot_search, search['real'], 'search.json', 'search.png')
    return figures


def _mean(values):
    return statistics.mean(values) if values else None


def _refresh(plot, folder, source, target):
    src, dst = os.path.join(folder, source), os.path.join(folder, target)
    if not os.path.exists(src):
        return
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return
    try:
        plot(folder)
    except (UsageError, OSError) as e:  # one odd run must not stop the report
        print(f'warning: no {target} for {folder}: {e}', file=sys.stderr)


# ---------------------------------------------------------------- CLI

def report(roots, out=None, metric='last', plot=False, compare_with='auto'):
    """Collect, tabulate and write results.md / results.csv; returns their paths.

    compare_with: 'published' (scripts/published_results.csv), a CSV path in its layout, 'none',
    or 'auto' (the published numbers, shown only when some run matches a published pair).
    """
    if metric not in ('last', 'best'):
        raise UsageError(f"--metric must be 'last' or 'best', not {metric!r}")
    runs, incomplete, searches = collect(roots)
    if not (runs or incomplete or searches):
        raise UsageError(f"no runs under {', '.join(roots)} (looked for summary.json, log.csv, "
                         "*.pth and search.json)")
    link_searches(runs, incomplete, searches)
    tables = build_tables(runs, searches, metric)
    comparisons = []
    if compare_with != 'none':
        path = PUBLISHED_CSV if compare_with in ('auto', 'published') else compare_with
        comparisons = compare(runs, published_by_pair(load_published(path)))
        if not comparisons and compare_with != 'auto':
            print(f'note: no run matches a published (teacher, student, method) in {path}', file=sys.stderr)
    out = out or roots[0]
    md_path, csv_path = os.path.join(out, 'results.md'), os.path.join(out, 'results.csv')
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise WriteError(out, e) from None
    figures = draw_plots(tables, runs, incomplete, searches, out, metric) if plot else {}
    text = markdown(tables, searches, incomplete, metric, figures)
    if comparisons:
        text += '\n' + '\n'.join(comparison_markdown(comparisons))
    write_text(text, md_path)
    write_csv(csv_path, runs, incomplete, COMPARE_FIELDS if comparisons else ())
    return md_path, csv_path, text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('folders', nargs='+', help='folders searched recursively for runs')
    parser.add_argument('--out', help='where results.md/.csv go (default: the first folder)')
    parser.add_argument('--metric', choices=['last', 'best'], default='last',
                        help='accuracy of the last epoch (as published) or the best epoch')
    parser.add_argument('--plot', action='store_true',
                        help='also draw method comparisons and missing run/search plots')
    parser.add_argument('--compare', default='auto', metavar='published|none|CSV',
                        help='our numbers beside the published ones (scripts/published_results.csv, '
                             'or a CSV in its layout); default: when some run matches a published pair')
    args = parser.parse_args(argv)
    try:
        md_path, csv_path, text = report(args.folders, args.out, args.metric, args.plot, args.compare)
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except WriteError as e:
        print(f'error: {e}; free space (or fix the permissions), then run it again', file=sys.stderr)
        return WriteError.exit_code
    print(text)
    print(f'wrote {md_path} and {csv_path}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
