"""Distillation methods: RepDistiller's loss modules under their published names, one method unit
per --distill name (METHODS), the modern logit methods (DKD, DIST, logit standardization) and
CRD-EMKD's milestone checking."""
from distiller_zoo.abound import ABLoss, ABMethod
from distiller_zoo.attention import Attention, ATMethod
from distiller_zoo.base import DistillKL, Distiller, Method, Vanilla, feature_shapes
from distiller_zoo.correlation import CCMethod, Correlation
from distiller_zoo.crd import CRDMethod
from distiller_zoo.dist import DISTMethod, dist_loss
from distiller_zoo.dkd import DKDMethod, dkd_loss
from distiller_zoo.factor import FactorTransfer, FTMethod
from distiller_zoo.fsp import FSP, FSPMethod
from distiller_zoo.hint import FitNetMethod, HintLoss
from distiller_zoo.kd import KDMethod
from distiller_zoo.kdsvd import KDSVD, KDSVDMethod
from distiller_zoo.logit_stand import standardize
from distiller_zoo.mc import MilestoneChecking, WithMilestones, check_mc_shapes, mc_stage_count, mc_weights
from distiller_zoo.nst import NSTLoss, NSTMethod
from distiller_zoo.ofd import OFDMethod
from distiller_zoo.pkt import PKT, PKTMethod
from distiller_zoo.reviewkd import ReviewKDMethod
from distiller_zoo.rkd import RKDLoss, RKDMethod
from distiller_zoo.similarity import Similarity, SPMethod
from distiller_zoo.vid import VIDLoss, VIDMethod
from helper.errors import unknown_name

# --distill name -> method class (class XMethod: the method of paper X; its loss module keeps the
# published RepDistiller name)
METHODS = {cls.name: cls for cls in (KDMethod, FitNetMethod, ATMethod, SPMethod, CCMethod, VIDMethod, CRDMethod,
                                     KDSVDMethod, FSPMethod, RKDMethod, PKTMethod, ABMethod, FTMethod, NSTMethod,
                                     DKDMethod, DISTMethod, ReviewKDMethod, OFDMethod)}


def build_distiller(name, opt, s_shapes, t_shapes, n_data):
    """The method unit for --distill name, sized for these student/teacher feature shapes."""
    if name not in METHODS:
        raise unknown_name('--distill', name, METHODS)
    return METHODS[name](opt, s_shapes, t_shapes, n_data)


__all__ = ['DistillKL', 'HintLoss', 'Attention', 'Similarity', 'Correlation', 'VIDLoss', 'RKDLoss',
           'PKT', 'ABLoss', 'FactorTransfer', 'FSP', 'NSTLoss', 'KDSVD', 'dkd_loss', 'dist_loss', 'standardize',
           'Method', 'Vanilla', 'Distiller', 'METHODS', 'build_distiller', 'feature_shapes',
           'MilestoneChecking', 'WithMilestones', 'mc_weights', 'check_mc_shapes', 'mc_stage_count']
