import torch
from torch import nn

from distiller_zoo.base import Distiller


class PKT(nn.Module):
    """Probabilistic knowledge transfer: KL between the batch's cosine-similarity distributions
    (each similarity mapped to [0, 1] and rows normalised to sum to 1)."""

    def forward(self, f_s, f_t):
        return self.cosine_similarity_loss(f_s, f_t)

    @staticmethod
    def cosine_similarity_loss(output_net, target_net, eps=1e-7):
        def conditional(x):
            x = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
            x = torch.where(torch.isnan(x), torch.zeros_like(x), x)   # all-zero rows
            sim = (x @ x.t() + 1.0) / 2.0
            return sim / sim.sum(dim=1, keepdim=True)

        p_s, p_t = conditional(output_net), conditional(target_net)
        return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))


class PKTMethod(Distiller):
    """Pooled vectors."""

    name = 'pkt'
    order = 11
    paper = ('Passalis & Tefas, 2018, Learning Deep Representations with Probabilistic Knowledge '
             'Transfer')
    beta = 30000.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = PKT()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return self.criterion(s_feats[-1], t_feats[-1])
