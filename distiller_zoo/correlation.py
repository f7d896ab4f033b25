from torch import nn

from crd.criterion import LinearEmbed
from distiller_zoo.base import Distiller


class Correlation(nn.Module):
    """Correlation congruence as published: mean over consecutive sample pairs of
    sum_d |s_i - t_i| * |s_{i+1} - t_{i+1}|."""

    def forward(self, f_s, f_t):
        delta = (f_s - f_t).abs()
        return (delta[:-1] * delta[1:]).sum(1).mean()


class CCMethod(Distiller):
    """Pooled vectors, each through a trainable linear embedding to opt.feat_dim."""

    name = 'correlation'
    order = 5
    paper = 'Peng et al., 2019, Correlation Congruence for Knowledge Distillation'
    beta = 0.02

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.trainable['embed_s'] = LinearEmbed(s_shapes[-1][1], opt.feat_dim)
        self.trainable['embed_t'] = LinearEmbed(t_shapes[-1][1], opt.feat_dim)
        self.criterion = Correlation()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return self.criterion(self.trainable['embed_s'](s_feats[-1]),
                              self.trainable['embed_t'](t_feats[-1]))
