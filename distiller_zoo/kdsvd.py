import torch
import torch.nn.functional as F
from torch import nn

from distiller_zoo.base import Distiller, require_equal_channels, stages


def _finite(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


class KDSVD(nn.Module):
    """KD via SVD: the top-k right singular vectors (channel space) of each stage map, scaled by
    the teacher's normalised singular values; the student's top k+3 are sign/order-aligned to the
    teacher's. Matches RBF relations between consecutive stages; one loss per stage after the
    first. Needs equal channels per stage."""

    def __init__(self, k=1):
        super().__init__()
        self.k = k

    def forward(self, g_s, g_t):
        losses = []
        prev_s = prev_t = None
        for f_s, f_t in zip(g_s, g_t):
            _, s_t, v_t = self.svd(f_t, self.k)
            _, _, v_s = self.svd(f_s, self.k + 3)
            v_s = self.align_rsv(v_s, v_t)
            s_t = s_t.unsqueeze(1)
            v_t, v_s = v_t * s_t, v_s * s_t
            if prev_s is not None:
                s_rbf = torch.exp(-(v_s.unsqueeze(2) - prev_s.unsqueeze(1)).pow(2) / 8)
                t_rbf = torch.exp(-(v_t.unsqueeze(2) - prev_t.unsqueeze(1)).pow(2) / 8)
                losses.append(_finite((s_rbf - t_rbf.detach()).pow(2)).sum())
            prev_s, prev_t = v_s, v_t
        bsz = g_s[0].shape[0]
        return [loss / bsz for loss in losses]

    @staticmethod
    def svd(feat, n=1):
        """SVD of each sample's (H*W, C) matrix; the first n of u, s, v, each L2-normalised."""
        assert feat.dim() == 4
        x = feat.flatten(2).transpose(1, 2)
        if x.requires_grad:
            # near-equal singular values (dead channels) make the SVD backward divide by ~0;
            # those entries carry no usable direction, so they get no gradient
            x.register_hook(_finite)
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        u, s, v = _finite(u), _finite(s), _finite(vh.transpose(1, 2))
        if n > 0:
            u = F.normalize(u[:, :, :n], dim=1)
            s = F.normalize(s[:, :n], dim=1)
            v = F.normalize(v[:, :, :n], dim=1)
        return u, s, v

    @staticmethod
    def align_rsv(a, b):
        """For each column of b, the column of a with the largest |cosine|, with b's sign."""
        cosine = a.transpose(1, 2) @ b
        best = cosine.abs().max(dim=1, keepdim=True).values
        mask = torch.where(best == cosine.abs(), torch.sign(cosine), torch.zeros_like(cosine))
        return a @ mask


class KDSVDMethod(Distiller):
    """Stages 1..n; needs the same channels per stage."""

    name = 'kdsvd'
    order = 8
    paper = ('Lee et al., 2018, Self-supervised Knowledge Distillation Using Singular Value '
             'Decomposition')
    beta = 1.0   # no published script value; RepDistiller lists none for kdsvd

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        require_equal_channels('kdsvd', stages(s_shapes), stages(t_shapes))
        self.criterion = KDSVD()

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return torch.stack(self.criterion(stages(s_feats), stages(t_feats))).sum()
