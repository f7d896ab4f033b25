"""scripts/train.sh and scripts/search.sh as a new user runs them: from a bare environment (no
python with torch on PATH, PYTHON unset), a recipe by name with arguments appended, on tiny
generated CIFAR-100 data; and `list`."""
import glob
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT

# what `env -i` leaves, plus a HOME: no virtualenv on PATH, no PYTHON, no PYTHONPATH
BARE = {'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '1'}


def script(name, *args, env=None, timeout=900):
    return subprocess.run(['bash', os.path.join(ROOT, 'scripts', name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env or dict(BARE, HOME=os.path.expanduser('~')))


def tiny(data, save_root, teacher):
    """Arguments that shrink a recipe to one epoch on the tiny data with the tiny resnet8 teacher."""
    return ['--path_t', teacher, '--model_t', 'resnet8', '--data_folder', data, '--save_root', str(save_root),
            '--epochs', '1', '--batch_size', '16', '--nce_k', '16', '--num_workers', '0', '--seed', '0',
            '--device', 'cpu', '--print_freq', '1000']


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.slow
def test_train_sh_runs_a_recipe_with_appended_arguments_from_a_bare_environment(data, teacher, tmp_path):
    out = script('train.sh', 'crd', *tiny(data, tmp_path, teacher), '--trial', '2')
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run_dir,) = glob.glob(str(tmp_path / 'student_model' / '*'))
    # the recipe's flags, then the appended ones: --trial 2 replaced the recipe's --trial 1
    assert re.fullmatch(r'S-resnet20_T-resnet8_cifar100_crd_r-1_a-0_b-0\.8_2_id-[0-9a-f]{8}', os.path.basename(run_dir))
    summary = read_json(os.path.join(run_dir, 'summary.json'))
    assert summary['status'] == 'finished' and summary['epochs'] == 1


@pytest.mark.slow
def test_search_sh_runs_a_recipe_with_appended_arguments_from_a_bare_environment(data, teacher, tmp_path):
    # resnet8's stages hold 1 block each: no move fits, the search trains its start composition only
    out = script('search.sh', 'crd_mc', *tiny(data, tmp_path, teacher))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (folder,) = glob.glob(str(tmp_path / 'search' / 'BCS_*'))
    result = read_json(os.path.join(folder, 'search.json'))
    assert result['status'] == 'finished' and result['mc'] == 1
    assert [c['block_depth'] for c in result['candidates']] == [[3, 3, 3]]


def test_recipes_fail_clearly_without_a_name_they_know():
    out = script('train.sh', 'crd_mcc', env=dict(BARE, HOME='/nonexistent'))
    assert out.returncode == 2 and out.stdout == '' and 'crd_mc' in out.stderr and 'list' in out.stderr


@pytest.mark.parametrize('name', ['train.sh', 'search.sh'])
def test_list_prints_groups_with_what_each_recipe_trains(name):
    out = script(name, 'list', env=dict(BARE, HOME='/nonexistent'))
    assert out.returncode == 0 and out.stderr == ''
    groups, recipes = [], {}
    for line in out.stdout.splitlines():
        if line.endswith(':') and not line.startswith(' '):
            groups.append(line)
        elif line:
            m = re.match(r'^  ([a-z0-9_]+) +(\S.*)$', line)
            assert m, line  # every recipe has its one-line description
            recipes[m.group(1)] = m.group(2)
    assert groups and groups[0].startswith('published')
    with open(os.path.join(ROOT, 'scripts', name)) as f:
        published = re.search(r'^PUBLISHED="([^"]*)"', f.read(), re.M).group(1).split()
    assert set(published) <= set(recipes)
    if name == 'train.sh':
        assert len(groups) == 5
        # the published kd line has -a 0: it trains cross-entropy alone, and says so
        assert recipes['kd'].startswith('CE alone')
        assert 'MC' in recipes['crd_mc'] and 'MC' not in recipes['crd']
        assert 'linked where' in recipes['teacher']


@pytest.mark.slow
def test_teacher_recipe_links_its_checkpoint_where_the_recipes_read_it(tmp_path):
    # a fake python that writes the checkpoint train_teacher.py would: the link is the shell's work
    fake = tmp_path / 'fake_python'
    fake.write_text('#!/bin/sh\nmkdir -p save/models/resnet110_cifar100_lr_0.05_decay_0.0005_trial_0\n'
                    'echo weights > save/models/resnet110_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth\n')
    fake.chmod(0o755)
    root = tmp_path / 'clone'
    (root / 'scripts').mkdir(parents=True)
    for name in ('train.sh', 'recipes.sh'):
        (root / 'scripts' / name).write_text(open(os.path.join(ROOT, 'scripts', name)).read())
    env = dict(BARE, HOME='/nonexistent', PYTHON=str(fake))
    out = subprocess.run(['bash', str(root / 'scripts' / 'train.sh'), 'teacher'], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    link = root / 'checkpoints' / 'cifar100' / 'resnet110_vanilla' / 'ckpt_epoch_240.pth'
    assert link.read_text() == 'weights\n' and 'linked' in out.stderr
    # a second run leaves the existing checkpoint alone and says so
    out = subprocess.run(['bash', str(root / 'scripts' / 'train.sh'), 'teacher'], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0 and 'left as it is' in out.stderr
