"""The search's own folder: named by the start run's identity, so a smoke search and the real
one never share search.json or search-result.txt; an older folder without the hash is reused only
when its search.json records the same options, and is never changed otherwise."""
import json
import os

import search
from helper.runs.checkpoint import write_json
from helpers_data import student_args


def options(tmp_path, *extra):
    teacher = tmp_path / 'teacher.pth'
    if not teacher.exists():
        teacher.write_bytes(b'weights')
    argv = student_args(str(tmp_path / 'data'), str(tmp_path / 'save'), str(teacher), 'crd', 'myresnet14',
                        '--model_t', 'wrn_40_1', '--block_depth', '2,2,2', *extra)
    return search.checked_options(search.search_parser().parse_args(argv))


def folder_of(opt):
    return search.Search(opt).dir


def test_a_search_with_other_epochs_or_teacher_gets_its_own_folder(tmp_path):
    smoke = folder_of(options(tmp_path))
    real = folder_of(options(tmp_path, '--epochs', '240'))
    assert smoke != real and os.path.dirname(smoke) == os.path.dirname(real)
    assert os.path.basename(smoke).startswith('BCS_S-myresnet14-2-2-2_') and '_id-' in smoke
    assert folder_of(options(tmp_path)) == smoke  # the same command finds it again
    (tmp_path / 'teacher.pth').write_bytes(b'other weights')
    assert folder_of(options(tmp_path)) != smoke  # the teacher by content, not by path


def test_an_older_folder_without_the_hash_is_reused_only_for_the_same_options(tmp_path):
    opt = options(tmp_path)
    hashed = folder_of(opt)
    readable = hashed[:hashed.rindex('_id-')]
    os.makedirs(readable)
    record = {'status': 'finished', 'options': search.options_dict(opt), 'candidates': []}
    write_json(record, os.path.join(readable, 'search.json'))
    assert folder_of(opt) == readable

    other = options(tmp_path, '--epochs', '240')
    assert folder_of(other) != readable and '_id-' in folder_of(other)
    with open(os.path.join(readable, 'search.json')) as f:
        assert json.load(f) == record  # read, never rewritten

    (tmp_path / 'save' / 'search' / os.path.basename(readable) / 'search.json').write_text('{"half')
    assert folder_of(opt) == hashed  # unreadable: left alone, the search goes to its own folder
