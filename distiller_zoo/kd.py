from distiller_zoo.base import DistillKL, Distiller

__all__ = ['DistillKL', 'KDMethod']


class KDMethod(Distiller):
    """Logit KD alone: the CE and KD terms every distiller has, and no term of its own."""

    name = 'kd'
    paper = 'Hinton et al., 2015, Distilling the Knowledge in a Neural Network'
    gamma, alpha, beta = 0.1, 0.9, 0.0

    def method_terms(self, s_feats, s_logit, t_feats, t_logit, batch, epoch):
        return {}
