import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller


class Similarity(nn.Module):
    """Similarity-preserving loss: squared difference of the row-normalised batch Gram matrices,
    over batch^2. Takes and returns lists (each loss has shape (1,), as published)."""

    def forward(self, g_s, g_t):
        return [self.similarity_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    @staticmethod
    def similarity_loss(f_s, f_t):
        bsz = f_s.shape[0]
        f_s, f_t = f_s.reshape(bsz, -1), f_t.reshape(bsz, -1)
        g_s = F.normalize(f_s @ f_s.t())
        g_t = F.normalize(f_t @ f_t.t())
        return (g_t - g_s).pow(2).sum().reshape(1) / (bsz * bsz)


class SPMethod(Distiller):
    """Uses the last stage map."""

    name = 'similarity'
    order = 4
    paper = 'Tung & Mori, 2019, Similarity-Preserving Knowledge Distillation'
    beta = 3000.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = Similarity()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return torch.cat(self.criterion([s_feats[-2]], [t_feats[-2]])).sum()
