"""Distill a student from a teacher with any of the registered methods, optionally with MC.

Example: python train_student.py --path_t ./save/models/resnet110_vanilla/ckpt_epoch_240.pth \
    --distill crd --mc 1 --model_s myresnet20 --block_depth 3,7,2 -a 0 -b 0.8 --trial 1
"""
import sys

from helper.engine.options import student_parser
from helper.engine.run import main, run


def train_student(opt):
    """Distill with the given options (a parsed namespace); returns the run's summary dict.

    search.py calls this for every candidate composition.
    """
    return run(opt, 'student')


if __name__ == '__main__':
    sys.exit(main('student', student_parser()))
