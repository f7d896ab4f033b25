"""Train a teacher (or any model from scratch) with cross-entropy.

Example: python train_teacher.py --model resnet110 --trial 0
"""
import sys

from helper.engine.options import teacher_parser
from helper.engine.run import main, run


def train_teacher(opt):
    """Train with the given options (a parsed namespace); returns the run's summary dict."""
    return run(opt, 'teacher')


if __name__ == '__main__':
    sys.exit(main('teacher', teacher_parser()))
