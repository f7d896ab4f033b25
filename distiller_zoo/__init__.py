"""Distillation methods: RepDistiller's loss modules under their published names, one method unit
per --distill name (METHODS), the modern logit methods (DKD, DIST, logit standardization) and
CRD-EMKD's milestone checking."""
import importlib
import pkgutil

from distiller_zoo.abound import ABLoss
from distiller_zoo.attention import Attention
from distiller_zoo.base import DistillKL, Distiller, Method, Option, Vanilla, feature_shapes
from distiller_zoo.correlation import Correlation
from distiller_zoo.dist import dist_loss
from distiller_zoo.dkd import dkd_loss
from distiller_zoo.factor import FactorTransfer
from distiller_zoo.fsp import FSP
from distiller_zoo.hint import HintLoss
from distiller_zoo.kdsvd import KDSVD
from distiller_zoo.logit_stand import standardize
from distiller_zoo.mc import MilestoneChecking, WithMilestones, check_mc_shapes, mc_stage_count, mc_weights
from distiller_zoo.nst import NSTLoss
from distiller_zoo.pkt import PKT
from distiller_zoo.rkd import RKDLoss
from distiller_zoo.similarity import Similarity
from distiller_zoo.vid import VIDLoss
from helper.errors import unknown_name


def discover():
    """--distill name -> method class, for every Distiller subclass with a name defined in a module
    of this package: a new method file needs no registration. Ordered by the classes' `order`,
    then by module. (class XMethod: the method of paper X; its loss module keeps the published
    RepDistiller name.)"""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f'{__name__}.{info.name}')
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, Distiller) and cls.name \
                    and cls.__module__ == module.__name__:
                if cls.name in found:
                    raise ImportError(f'two methods are named {cls.name!r}: {found[cls.name].__module__} '
                                      f'and {module.__name__}')
                found[cls.name] = cls
    ranked = sorted(found.values(), key=lambda c: (c.order is None, c.order or 0, c.__module__, c.name))
    return {cls.name: cls for cls in ranked}


METHODS = discover()


def method_options():
    """(method class, Option) for every method's own options, in METHODS order."""
    return [(cls, option) for cls in METHODS.values() for option in cls.options]


def published_option_values():
    """{option: its published value (else its default)} of every method's own options: what a
    command line that omits them runs with (DKD's dkd_T, None here, follows --kd_T)."""
    return {o.name: o.default if o.published is None else o.published for _, o in method_options()}


def build_distiller(name, opt, s_shapes, t_shapes, n_data):
    """The method unit for --distill name, sized for these student/teacher feature shapes."""
    if name not in METHODS:
        raise unknown_name('--distill', name, METHODS)
    return METHODS[name](opt, s_shapes, t_shapes, n_data)


__all__ = ['DistillKL', 'HintLoss', 'Attention', 'Similarity', 'Correlation', 'VIDLoss', 'RKDLoss',
           'PKT', 'ABLoss', 'FactorTransfer', 'FSP', 'NSTLoss', 'KDSVD', 'dkd_loss', 'dist_loss', 'standardize',
           'Method', 'Option', 'Vanilla', 'Distiller', 'METHODS', 'method_options', 'published_option_values',
           'build_distiller', 'feature_shapes',
           'MilestoneChecking', 'WithMilestones', 'mc_weights', 'check_mc_shapes', 'mc_stage_count']
