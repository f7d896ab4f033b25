"""Every documented command line parses and passes option checks (the data and teachers are not here).

Commands are read from the seed README, README.md, scripts/train.sh and scripts/search.sh: each
`python <script>.py ...` (or torchrun / the scripts' `run` helper) is parsed with its script's parser
and its options checked as the script checks them before it reads any file.
"""
import os
import re
import shlex

import pytest

from helper.engine.options import finalize, student_parser, teacher_parser
from conftest import FIXTURES
from helpers_data import ROOT
from search import checked_options, search_parser

SEED_README = os.path.join(FIXTURES, 'seed_README.md')  # the published README: its commands are a contract
SOURCES = {
    'seed README': SEED_README,
    'README.md': os.path.join(ROOT, 'README.md'),
    'scripts/train.sh': os.path.join(ROOT, 'scripts', 'train.sh'),
    'scripts/search.sh': os.path.join(ROOT, 'scripts', 'search.sh'),
}
MIN_COMMANDS = {'seed README': 3, 'README.md': 3, 'scripts/train.sh': 30, 'scripts/search.sh': 3}
COMMAND = re.compile(r'(?:^|[\s`(])(?:python3?|torchrun|run)\b[^`\n;|]*?\b(train_teacher|train_student|search)\.py'
                     r'([^`\n;|]*)')
ASSIGNMENT = re.compile(r'^\s*([A-Za-z_]\w*)=(\S+)\s*$', re.M)
LOOP = re.compile(r'\bfor\s+(\w+)\s+in\s+([^;\n]+);\s*do')


def commands_in(text):
    """(script, argv) for every documented command; shell variables and for-loops are expanded."""
    text = re.sub(r'\\\n\s*', ' ', text)  # line continuations
    variables = {name: value.strip('"\'') for name, value in ASSIGNMENT.findall(text)}
    loops = []  # (body start, body end, variable, values): a loop variable means something in its body only
    for loop in LOOP.finditer(text):
        done = re.compile(r'\bdone\b').search(text, loop.end())
        loops.append((loop.end(), done.start() if done else len(text), loop.group(1), loop.group(2).split()))
    found = []
    for match in COMMAND.finditer(text):
        script, rest = match.group(1), match.group(2)
        rest = re.split(r'\s(?:#|&&|>|2>)', rest)[0]
        for name, value in variables.items():
            rest = re.sub(r'\$\{?' + name + r'\b\}?', value, rest)
        expansions = [{}]
        for start, end, name, values in loops:
            if start <= match.start() < end and re.search(r'\$\{?' + name + r'\b', rest):
                expansions = [dict(e, **{name: v}) for e in expansions for v in values]
        for expansion in expansions:
            line = rest
            for name, value in expansion.items():
                line = re.sub(r'\$\{?' + name + r'\b\}?', value, line)
            found.append((script, shlex.split(line)))
    return found


def check(script, argv, capsys):
    """Parse and validate one command's options as its script would, without touching files (a
    --dry_run goes further: it needs the data and the teacher, tests/test_dry_run.py)."""
    if script == 'search':
        return checked_options(search_parser().parse_args(argv))
    kind = 'teacher' if script == 'train_teacher' else 'student'
    return finalize((teacher_parser() if kind == 'teacher' else student_parser()).parse_args(argv), kind)


@pytest.mark.parametrize('source', sorted(SOURCES))
def test_documented_commands_parse(source, tmp_path, monkeypatch, capsys):
    with open(SOURCES[source]) as f:
        found = commands_in(f.read())
    assert len(found) >= MIN_COMMANDS[source], found
    monkeypatch.chdir(tmp_path)  # default ./save and ./data resolve here: nothing may appear
    failures = []
    for script, argv in found:
        try:
            check(script, argv, capsys)
        except Exception as e:  # collect them all: one report names every broken line
            failures.append(f'{script}.py {" ".join(argv)}\n    -> {type(e).__name__}: {e}')
    assert not failures, '\n'.join(failures)
    assert os.listdir(str(tmp_path)) == []


def test_seed_readme_mc_example_means_what_it_says(capsys, tmp_path, monkeypatch):
    with open(SEED_README) as f:
        found = commands_in(f.read())
    monkeypatch.chdir(tmp_path)
    student = [argv for script, argv in found if script == 'train_student' and '--mc' in argv]
    assert len(student) == 1
    opt = check('train_student', student[0], capsys)
    assert (opt.model_t, opt.model_s, opt.block_depth, opt.distill) == ('resnet110', 'myresnet20', [3, 7, 2], 'crd')
    assert (opt.mc, opt.mc_weight, opt.gamma, opt.alpha, opt.beta, opt.trial) == (1, 0.001, 1.0, 0.0, 0.8, '1')
    search = [argv for script, argv in found if script == 'search']
    assert len(search) == 1
    opt = check('search', search[0], capsys)
    assert opt.block_depth == [3, 3, 3] and opt.model_s == 'myresnet20'


def test_command_extraction():
    text = ('T=./t/resnet110_vanilla/c.pth\nS=resnet20\nrun() { echo "+ python $*"; python "$@"; }\n'
            'x) run train_student.py --path_t $T --model_s $S --distill kd ;;\n'
            'for m in kd crd; do\n  run train_student.py --path_t $T --distill $m --trial 1\ndone\n'
            'Try `python train_teacher.py --model resnet8`. Or:\n'
            'CUDA_VISIBLE_DEVICES=0 python search.py --path_t a/resnet8_x/c.pth \\\n    --model_s myresnet8  # note\n'
            'torchrun --nproc_per_node=2 train_student.py --path_t $T\n')
    assert commands_in(text) == [
        ('train_student', ['--path_t', './t/resnet110_vanilla/c.pth', '--model_s', 'resnet20', '--distill', 'kd']),
        ('train_student', ['--path_t', './t/resnet110_vanilla/c.pth', '--distill', 'kd', '--trial', '1']),
        ('train_student', ['--path_t', './t/resnet110_vanilla/c.pth', '--distill', 'crd', '--trial', '1']),
        ('train_teacher', ['--model', 'resnet8']),
        ('search', ['--path_t', 'a/resnet8_x/c.pth', '--model_s', 'myresnet8']),
        ('train_student', ['--path_t', './t/resnet110_vanilla/c.pth']),
    ]


def test_a_broken_command_is_reported(capsys):
    with pytest.raises(Exception, match='unknown --distill'):
        check('train_student', ['--path_t', 'x/resnet110_vanilla/c.pth', '--distill', 'crd_mc'], capsys)


def test_finalized_options_are_read_only_and_leave_the_parsed_ones_alone():
    parsed = student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/c.pth', '--block_depth', '3,7,2',
                                          '--model_s', 'myresnet20'])
    opt = finalize(parsed, 'student')
    assert parsed.block_depth == '3,7,2' and parsed.learning_rate is None and parsed.seed is None
    assert opt.block_depth == [3, 7, 2] and opt.learning_rate == 0.05 and opt.model_t == 'resnet110'
    with pytest.raises(AttributeError, match='read-only'):
        opt.learning_rate = 0.1
    changed = opt.replace(learning_rate=0.1)
    assert changed.learning_rate == 0.1 and opt.learning_rate == 0.05
    assert finalize(opt, 'student') is opt


def test_candidate_command_line_is_built_from_the_options():
    from helper.engine.options import options_argv
    opt = finalize(student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/c.pth', '--model_s', 'myresnet20',
                                                '--lr_decay_epochs', '5', '-b', '0.8', '--seed', '3']), 'student')
    c = opt.replace(block_depth=[2, 6, 1], lr_decay_epochs=[], resume=True)
    argv = options_argv(c, student_parser())
    assert '--lr_decay_epochs=' in argv and '--resume' in argv and '--beta=0.8' in argv
    again = finalize(student_parser().parse_args(argv), 'student')
    assert vars(again) == vars(c)


def test_options_keep_what_was_requested_beside_what_was_resolved():
    """Checkpoints and summary.json record both: `opt`/`options` the values the run used,
    `requested_options` the command line as given (None where a flag was omitted)."""
    parsed = student_parser().parse_args(['--path_t', 'x/resnet110_vanilla/c.pth', '--model_s', 'myresnet20',
                                          '-b', '0.8', '--fast'])
    opt = finalize(parsed, 'student')
    assert opt.requested['learning_rate'] is None and opt.learning_rate == 0.05
    assert opt.requested['gamma'] is None and opt.gamma == 1.0 and opt.requested['beta'] == 0.8
    resolved = opt.replace(data_on_device=True)  # what --fast turns on is resolved, not requested
    assert resolved.requested == opt.requested and resolved.requested['data_on_device'] is False
    import search
    c = search.candidate_options(opt, (2, 6, 1), short=False)  # a candidate's own flags count as given
    assert c.requested['block_depth'] == [2, 6, 1] and c.requested['learning_rate'] is None
    assert opt.requested['block_depth'] is None


def test_help_lists_the_models_and_methods_to_choose_from():
    import models
    from distiller_zoo import METHODS
    for parser, flags in ((student_parser(), ('--model_s', '--distill')), (teacher_parser(), ('--model',)),
                          (search_parser(), ('--model_s', '--distill'))):
        words = set(re.split(r'[\s,;:]+', parser.format_help()))
        for flag, names in (('--model_s', models.model_dict), ('--model', models.model_dict),
                            ('--distill', METHODS)):
            if flag in flags:
                assert set(names) <= words, (flag, set(names) - words)


def test_block_depth_with_spaces_is_told_to_use_commas():
    from helper.errors import UsageError
    argv = ['--path_t', 'x/resnet110_vanilla/c.pth', '--model_s', 'myresnet20', '--block_depth', '3 7 2']
    with pytest.raises(UsageError, match='separate the counts with commas: 3,7,2'):
        finalize(student_parser().parse_args(argv), 'student')
