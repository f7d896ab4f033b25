"""scripts/profile_cpu_step.py and the cost split of scripts/bench_cotrain.py: what they count,
on tiny models (the figures themselves are the benchmarks' to print, not a test's)."""
import argparse
import re

import pytest

from scripts import bench_cotrain, profile_cpu_step


def test_the_profile_counts_each_part_and_bounds_the_step(capsys):
    profile_cpu_step.main(['--pair', 'resnet8:resnet8:kd', '--batch_size', '4', '--rounds', '1', '--steps', '1',
                           '--eager_teacher'])
    out = capsys.readouterr().out
    rows = {m.group(1): [float(x) for x in m.group(2, 3, 5)]
            for m in re.finditer(r'^\| ([a-z ]+) \| ([\d.]+) \| ([\d.]+) \| [\d—]* \| ([\d.]+) \| [\d—]* \| ([\d.]+) \|$',
                                 out, re.M)}
    assert set(rows) == set(profile_cpu_step.PARTS) | {'whole step'}
    teacher, student, backward = (rows[p][0] for p in profile_cpu_step.PARTS[:3])
    assert teacher == pytest.approx(student, rel=0.05)  # the same network on both sides
    # a convolution's backward is twice its forward (input and weight gradients), less the first
    # layer's input gradient
    assert 1.5 * student < backward < 2.05 * student
    assert rows['whole step'][0] == pytest.approx(teacher + student + backward, abs=0.02)
    ceiling = re.search(r'fast step: ([\d.]+)x the published step; ceiling \(.*\): ([\d.]+)x', out)
    assert ceiling and float(ceiling.group(2)) > 0
    assert re.search(r'^\| convolution \| [\d.]+ \| \d+% \|$', out, re.M)


def test_the_search_cost_splits_into_teacher_passes_and_student_steps():
    phases = bench_cotrain.PHASES
    students = {d: 0.010 * sum(d) / 9 for phase in phases for d in phase}
    flops = {d: 1e9 * sum(d) for d in students}
    args = argparse.Namespace(batch_size=64)
    row = bench_cotrain.summarise(args, bench_cotrain.torch.device('cpu'), False, [0.010], {d: [s] for d, s in
                                  students.items()}, [0.05], [0.035], 'bf16', flops)
    assert row['search_full_cotrained_units'] == pytest.approx(
        row['search_full_teacher_units'] + row['search_full_students_units'])
    assert row['search_full_teacher_units'] == pytest.approx(len(phases) * 0.010 / 0.020)
    assert row['search_full_students_units'] == pytest.approx(sum(students.values()) / 0.020)
    assert row['student_step_vs_blocks']['15,4,2'] == [21, pytest.approx(21 / 9), pytest.approx(21 / 9)]
