import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller


class RKDLoss(nn.Module):
    """Relational KD: w_d * distance-wise + w_a * angle-wise smooth-L1 between the pairwise
    relations of the student and teacher batch embeddings."""

    def __init__(self, w_d=25, w_a=50):
        super().__init__()
        self.w_d = w_d
        self.w_a = w_a

    def forward(self, f_s, f_t):
        student = f_s.reshape(f_s.shape[0], -1)
        teacher = f_t.reshape(f_t.shape[0], -1)
        with torch.no_grad():
            t_d = self.normalised_distances(teacher)
            t_angle = self.angles(teacher)
        loss_d = F.smooth_l1_loss(self.normalised_distances(student), t_d)
        loss_a = F.smooth_l1_loss(self.angles(student), t_angle)
        return self.w_d * loss_d + self.w_a * loss_a

    @classmethod
    def normalised_distances(cls, e):
        d = cls.pdist(e)
        # mean of the positive distances (d >= 0), without a boolean-mask host sync
        return d / (d.sum() / (d > 0).sum())

    @staticmethod
    def angles(e):
        """Cosines of the angles at every anchor j between every pair (i, k): (B*B*B,)."""
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)

    @staticmethod
    def pdist(e, squared=False, eps=1e-12):
        sq = e.pow(2).sum(dim=1)
        d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
        if not squared:
            d = d.sqrt()
        off_diagonal = 1 - torch.eye(len(e), device=e.device, dtype=e.dtype)
        return d * off_diagonal


class RKDMethod(Distiller):
    """Pooled vectors."""

    name = 'rkd'
    order = 10
    paper = 'Park et al., 2019, Relational Knowledge Distillation'
    beta = 1.0

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.criterion = RKDLoss()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return self.criterion(s_feats[-1], t_feats[-1])
