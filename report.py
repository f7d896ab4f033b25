"""python report.py save/ [more folders] [--out DIR] [--metric last|best] [--plot] [--compare published|none|CSV]

Results tables, plots and published comparisons of the runs under the folders (helper/tools/report.py)."""
import sys

from helper.tools.report import main

if __name__ == '__main__':
    sys.exit(main())
