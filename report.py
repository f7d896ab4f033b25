"""Collect every run's summary.json under one or more folders into a benchmark table.

    python report.py save/ [more folders] [--out DIR] [--metric last|best] [--plot]
                     [--compare published|none|CSV]

Writes DIR/results.md (the CIFAR-100 benchmark layout: one column per teacher -> student
pair, one row per method, cells "mean ± sample std (n trials)") and DIR/results.csv (one row
per run, incomplete ones included). --plot also draws one method-comparison figure per pair,
and the curves/search plots of runs and searches that lack an up-to-date one. Runs that match a
published (teacher, student, method) are compared with scripts/published_results.csv.
"""
import sys

from helper.report import main

if __name__ == '__main__':
    sys.exit(main())
