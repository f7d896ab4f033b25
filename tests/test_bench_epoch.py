"""scripts/bench_epoch.py: whole epochs of the real command, published settings against --fast."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
import bench_epoch  # noqa: E402


@pytest.mark.slow  # four short training runs, two of them compiled
def test_epoch_bench_times_both_sides_from_their_log_lines(tmp_path, capsys):
    out = tmp_path / 'epoch.json'
    assert bench_epoch.main(['--pair', 'resnet8:resnet8:kd', '--images', '200', '--epochs', '2', '--rounds', '1',
                             '--json', str(out)]) == 0
    row = json.loads(out.read_text())
    for side in ('published', 'fast'):
        (times,) = row['epoch_times_s'][side]
        assert len(times) == 2 and all(t > 0 for t in times)
        assert row['steady_epoch_s'][side] == times[1]
    assert row['speedup'] == pytest.approx(row['steady_epoch_s']['published'] / row['steady_epoch_s']['fast'])
    assert 'steady-state epoch' in capsys.readouterr().out


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
