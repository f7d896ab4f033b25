import torch
from torch import nn

from crd.memory import ContrastMemory

EPS = 1e-7


class Normalize(nn.Module):
    """Divide each row by its p-norm."""

    def __init__(self, power=2):
        super().__init__()
        self.power = power

    def forward(self, x):
        return x / x.pow(self.power).sum(1, keepdim=True).pow(1.0 / self.power)


class Embed(nn.Module):
    """Flatten, linear projection, L2-normalise (CRD's embedding heads)."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.l2norm = Normalize(2)

    def forward(self, x):
        return self.l2norm(self.linear(x.flatten(1)))


class LinearEmbed(nn.Module):
    """Flatten and a linear projection, no normalisation (CC's embedding heads)."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return self.linear(x.flatten(1))


class ContrastLoss(nn.Module):
    """NCE loss of CRD (Eq. 18): x is (batch, 1 + K, 1) memory scores, the positive first,
    scored against a uniform noise distribution over n_data samples."""

    def __init__(self, n_data):
        super().__init__()
        self.n_data = n_data

    def forward(self, x):
        bsz, k = x.shape[0], x.shape[1] - 1
        noise = k / float(self.n_data)
        pos = x[:, 0]
        neg = x[:, 1:]
        log_d1 = torch.log(pos / (pos + noise + EPS))
        log_d0 = torch.log(noise / (neg + noise + EPS))
        # shape (1,) as published
        return -(log_d1.sum(0) + log_d0.reshape(-1, 1).sum(0)) / bsz


class CRDLoss(nn.Module):
    """Two-sided CRD loss: the teacher anchors contrast against student memory and vice versa.

    opt needs s_dim, t_dim, feat_dim, nce_k, nce_t, nce_m and n_data (the memory has one row
    per training sample).
    """

    def __init__(self, opt):
        super().__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m)
        self.criterion_t = ContrastLoss(opt.n_data)
        self.criterion_s = ContrastLoss(opt.n_data)

    def forward(self, f_s, f_t, idx, contrast_idx=None, gather=None):
        """f_s/f_t: (batch, s_dim/t_dim) features; idx: (batch,) dataset indices;
        contrast_idx: (batch, 1 + nce_k), positive first, or None to sample uniformly;
        gather: see ContrastMemory.update."""
        out_s, out_t = self.contrast(self.embed_s(f_s), self.embed_t(f_t), idx, contrast_idx,
                                     gather)
        return self.criterion_s(out_s) + self.criterion_t(out_t)
