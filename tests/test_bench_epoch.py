"""scripts/bench_epoch.py: whole epochs of the real command, published settings against --fast."""
import json
import os
import pickle
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
import bench_epoch  # noqa: E402


@pytest.mark.slow  # four short training runs, two of them compiled
def test_epoch_bench_times_both_sides_from_their_log_lines(tmp_path, capsys, monkeypatch):
    commands, written = [], []
    run, make = bench_epoch.subprocess.run, bench_epoch.make_cifar100

    def recording_run(cmd, **kwargs):
        commands.append(cmd)
        return run(cmd, **kwargs)

    def counting_make(root, n_train, n_test):
        make(root, n_train, n_test)
        for split in ('train', 'test'):
            with open(os.path.join(root, 'cifar-100-python', split), 'rb') as f:
                written.append(len(pickle.load(f)['fine_labels']))
    monkeypatch.setattr(bench_epoch.subprocess, 'run', recording_run)
    monkeypatch.setattr(bench_epoch, 'make_cifar100', counting_make)
    out = tmp_path / 'epoch.json'
    assert bench_epoch.main(['--pair', 'resnet8:resnet8:kd', '--images', '200', '--epochs', '2', '--rounds', '1',
                             '--json', str(out)]) == 0
    row = json.loads(out.read_text())
    assert {k: row[k] for k in ('pair', 'images', 'epochs', 'rounds')} == {
        'pair': 'resnet8:resnet8:kd', 'images': 200, 'epochs': 2, 'rounds': 1}
    assert written == [200, 100]  # the set it says it timed: 200 train images, a fifth (at least 100) test
    # one real train_student.py run per side, the same command but for --fast --compile (the steady state
    # is what a long run gets, and a long run compiles) and its own folder
    assert len(commands) == 2 and commands[0][1].endswith('train_student.py')
    published, fast = commands
    assert '--fast' not in published and fast.count('--fast') == 1
    assert '--compile' not in published and fast.count('--compile') == 1
    strip = lambda cmd: [a for a in cmd if a not in ('--fast', '--compile') and 'published0' not in a
                         and 'fast0' not in a]
    assert strip(published) == strip(fast)
    assert published[published.index('--epochs') + 1] == '2'
    assert set(row['epoch_times_s']) == set(row['steady_epoch_s']) == {'published', 'fast'}
    for side in ('published', 'fast'):
        (times,) = row['epoch_times_s'][side]
        assert len(times) == 2 and all(t > 0 for t in times)
        assert row['steady_epoch_s'][side] == times[1]  # epoch 1 (compilation) is left out
    assert isinstance(row['speedup'], float)
    assert 'steady-state epoch (200 images + 100 test)' in capsys.readouterr().out


def test_one_epoch_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        bench_epoch.main(['--epochs', '1'])
    assert e.value.code == 2
    assert 'at least 2' in capsys.readouterr().err


def test_epoch_lines_are_read_from_the_training_log():
    line = 'epoch 3/240: train acc 1.00 loss 4.6 | test acc 1.00 top5 5.00 loss 4.6 | lr 0.05 | 12.5 s'
    m = bench_epoch.EPOCH_LINE.search(line)
    assert m and m.group(1) == '3' and float(m.group(2)) == 12.5


@pytest.mark.slow  # two short training runs
def test_process_bench_times_whole_one_epoch_runs(tmp_path, capsys):
    out = tmp_path / 'process.json'
    assert bench_epoch.main(['--process', '--pair', 'resnet8:resnet8:kd', '--images', '200', '--epochs', '1',
                             '--rounds', '1', '--json', str(out)]) == 0
    row = json.loads(out.read_text())
    (pub,), (fast,) = row['process_s']['published'], row['process_s']['fast']
    assert pub > 0 and fast > 0 and row['speedup'] == pytest.approx(pub / fast)
    # 3 steps of a 1-epoch run cannot repay a compilation: --fast says so and runs eager
    assert row['fast_decisions'] and row['fast_decisions'][0].startswith('--fast: not compiling: 3 steps')
    assert 'whole 1-epoch process' in capsys.readouterr().out
