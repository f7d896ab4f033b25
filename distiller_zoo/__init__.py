"""Distillation methods: RepDistiller's loss modules under their published names, one method unit
per --distill name (METHODS), and CRD-EMKD's milestone checking."""
import difflib

from distiller_zoo.abound import AB, ABLoss
from distiller_zoo.attention import AT, Attention
from distiller_zoo.base import DistillKL, Distiller, Method, Vanilla, feature_shapes
from distiller_zoo.correlation import CC, Correlation
from distiller_zoo.crd import CRD
from distiller_zoo.factor import FT, FactorTransfer
from distiller_zoo.fsp import FSP, FSPDistiller
from distiller_zoo.hint import FitNet, HintLoss
from distiller_zoo.kd import KD
from distiller_zoo.kdsvd import KDSVD, SVD
from distiller_zoo.mc import MilestoneChecking, WithMilestones, check_mc_shapes, mc_stage_count, mc_weights
from distiller_zoo.nst import NST, NSTLoss
from distiller_zoo.pkt import PKT, PKTDistiller
from distiller_zoo.rkd import RKD, RKDLoss
from distiller_zoo.similarity import SP, Similarity
from distiller_zoo.vid import VID, VIDLoss
from helper.errors import UsageError

METHODS = {cls.name: cls for cls in (KD, FitNet, AT, SP, CC, VID, CRD, SVD, FSPDistiller, RKD,
                                     PKTDistiller, AB, FT, NST)}


def build_distiller(name, opt, s_shapes, t_shapes, n_data):
    """The method unit for --distill name, sized for these student/teacher feature shapes."""
    if name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=3)
        hint = f'did you mean {", ".join(close)}?' if close else f'choose from {", ".join(METHODS)}'
        raise UsageError(f'unknown --distill {name!r}; {hint}')
    return METHODS[name](opt, s_shapes, t_shapes, n_data)


__all__ = ['DistillKL', 'HintLoss', 'Attention', 'Similarity', 'Correlation', 'VIDLoss', 'RKDLoss',
           'PKT', 'ABLoss', 'FactorTransfer', 'FSP', 'NSTLoss', 'KDSVD',
           'Method', 'Vanilla', 'Distiller', 'METHODS', 'build_distiller', 'feature_shapes',
           'MilestoneChecking', 'WithMilestones', 'mc_weights', 'check_mc_shapes', 'mc_stage_count']
