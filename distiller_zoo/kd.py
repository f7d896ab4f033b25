from distiller_zoo.base import DistillKL, Distiller
from distiller_zoo.logit_stand import KD_WEIGHT

__all__ = ['DistillKL', 'KDMethod']


class KDMethod(Distiller):
    """Logit KD alone: the CE and KD terms every distiller has, and no term of its own."""

    name = 'kd'
    order = 1
    paper = 'Hinton et al., 2015, Distilling the Knowledge in a Neural Network'
    gamma, alpha, beta = 0.1, 0.9, 0.0
    supports_logit_stand = True   # applied to the KD term (DistillKL standardize)
    terms = {}   # no term of its own

    @classmethod
    def published_weights(cls, opt):
        # logit standardization's KD: CE weight 0.1, KD weight 9 (its published defaults)
        return cls.gamma, KD_WEIGHT if opt.logit_stand else cls.alpha, cls.beta

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {}
