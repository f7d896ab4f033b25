"""The published recipe of each row of scripts/published_results.csv: the command that makes it.

scripts/reproduce.sh runs these commands; report.py gives a verdict against a published number
only to runs whose options equal its row's recipe. A table may carry a `recipe` column: flags that
every run of that row adds (e.g. a schedule of its own).
"""
import os
import re
import shlex

from helper.errors import UsageError
from helper.engine.identity import IDENTITY_OPTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The options a run must share with its row's recipe to be compared (the pair and method are
# matched by the row itself; seeds differ by design).
COMPARED = tuple(k for k in IDENTITY_OPTIONS if k not in ('seed', 'model', 'model_s', 'model_t', 'block_depth'))
# Options every version of the summary records; a run without them is not comparable.
REQUIRED = ('epochs', 'lr_decay_epochs', 'learning_rate', 'batch_size', 'gamma', 'alpha', 'beta')

# The published weights of each method (RepDistiller's scripts/run_cifar_distill.sh); the
# methods of later papers take their --distill defaults.
RECIPES = {
    'kd': ['--distill', 'kd', '-r', '0.1', '-a', '0.9', '-b', '0'],
    'hint': ['--distill', 'hint', '-a', '0', '-b', '100'],
    'attention': ['--distill', 'attention', '-a', '0', '-b', '1000'],
    'similarity': ['--distill', 'similarity', '-a', '0', '-b', '3000'],
    'correlation': ['--distill', 'correlation', '-a', '0', '-b', '0.02'],
    'vid': ['--distill', 'vid', '-a', '0', '-b', '1'],
    'rkd': ['--distill', 'rkd', '-a', '0', '-b', '1'],
    'pkt': ['--distill', 'pkt', '-a', '0', '-b', '30000'],
    'abound': ['--distill', 'abound', '-a', '0', '-b', '1'],
    'factor': ['--distill', 'factor', '-a', '0', '-b', '200'],
    'fsp': ['--distill', 'fsp', '-a', '0', '-b', '50'],
    'nst': ['--distill', 'nst', '-a', '0', '-b', '50'],
    'crd': ['--distill', 'crd', '-a', '0', '-b', '0.8'],
    'crd+kd': ['--distill', 'crd', '-a', '1', '-b', '0.8'],
    'dkd': ['--distill', 'dkd'],
    'dist': ['--distill', 'dist'],
    'kd+ls': ['--distill', 'kd', '--logit_stand'],
    'dkd+ls': ['--distill', 'dkd', '--logit_stand'],
    'reviewkd': ['--distill', 'reviewkd'],
    'ofd': ['--distill', 'ofd'],
    'kd+dot': ['--distill', 'kd', '-r', '0.1', '-a', '0.9', '-b', '0', '--optimizer', 'dot', '--dot_delta', '0.075'],
}



# Methods whose authors set weights per pair: their lines in scripts/train.sh are the one record.
PER_PAIR_RECIPES = {'dkd': 'dkd', 'kd+ls': 'kd_ls', 'dkd+ls': 'dkd_ls', 'reviewkd': 'reviewkd'}
TRAIN_SH = os.path.join(ROOT, 'scripts', 'train.sh')


def pair_recipe(method, teacher, student, train_sh=TRAIN_SH):
    """The method's flags for this pair from its train.sh recipe, else its RECIPES entry."""
    name = PER_PAIR_RECIPES.get(method)
    if name is not None:
        with open(train_sh) as f:
            block = re.search(rf'^{re.escape(name)}\)(.*?);;', f.read(), re.M | re.S)
        for line in (block.group(1).splitlines() if block else []):
            if 'train_student.py' not in line:
                continue
            argv = shlex.split(line.split('train_student.py', 1)[1])
            flags = dict(zip(argv, argv[1:]))
            if (flags.get('--model_t'), flags.get('--model_s')) == (teacher, student):
                own = argv[argv.index('--model_s') + 2:]
                return own[:own.index('--trial')] if '--trial' in own else own
    return RECIPES[method]


def row_flags(row):
    """The row's own flags (its optional `recipe` column), as a list."""
    try:
        return shlex.split(row.get('recipe') or '')
    except ValueError as e:
        raise UsageError(f"bad recipe {row.get('recipe')!r}: {e}") from None


def recipe_command(method, teacher, student, path_t, flags=()):
    """('teacher' | 'student', argv) of the published command of one row, without trial and seed."""
    if method in ('scratch', 'teacher'):
        return 'teacher', ['--model', student if method == 'scratch' else teacher, *flags]
    if method not in RECIPES:
        raise UsageError(f'no recipe for method {method!r}')
    return 'student', ['--path_t', path_t, '--model_t', teacher, '--model_s', student,
                       *pair_recipe(method, teacher, student), *flags]


_options = {}


def recipe_options(row):
    """The options (a dict) that the row's published command resolves to; a UsageError when this
    build cannot make that run."""
    from helper.engine.options import finalize, options_dict, student_parser, teacher_parser

    method = row['method']
    flags = tuple(row_flags(row))
    key = (row['teacher'], row['student'], method, flags)
    if key not in _options:
        kind, argv = recipe_command(method, row['teacher'], row['student'], 'recipe.pth', flags)
        parser = teacher_parser() if kind == 'teacher' else student_parser()
        _options[key] = options_dict(finalize(parser.parse_args(argv + ['--seed', '0']), kind))
    return _options[key]
