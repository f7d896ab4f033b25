import math

import torch
from torch import nn


def _identity(t):
    return t


class ContrastMemory(nn.Module):
    """Two memory banks (student side v1, teacher side v2) of n_data x feat_dim unit vectors.

    Runs wherever its buffers live. The normalisation constants Z are buffers set from the first
    batch without a host sync (a negative value means "not set yet"). Under DDP, `gather` makes
    the first batch the global one and the update see every rank's rows, so the buffers stay
    equal on all ranks without being broadcast.
    """

    synced_by_gather = True  # read by helper.dist.wrap

    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5):
        super().__init__()
        self.n_data = outputSize
        self.K = K
        self.T = T
        self.momentum = momentum
        stdv = 1.0 / math.sqrt(inputSize / 3)
        self.register_buffer('memory_v1', torch.rand(outputSize, inputSize) * (2 * stdv) - stdv)
        self.register_buffer('memory_v2', torch.rand(outputSize, inputSize) * (2 * stdv) - stdv)
        # When K is a large share of the bank (CIFAR: 16385 of 50,000), scoring every row with one
        # matmul reads the bank once, where gathering first reads K + 1 rows per sample.
        self.score_all_rows = outputSize <= 4 * (K + 1)
        self.register_buffer('z_v1', torch.tensor(-1.0))
        self.register_buffer('z_v2', torch.tensor(-1.0))

    def sample(self, y):
        """Uniform negatives (what the published alias sampler does with uniform weights),
        with the positive y in column 0."""
        idx = torch.randint(0, self.n_data, (y.shape[0], self.K + 1), device=self.memory_v1.device)
        idx[:, 0] = y
        return idx

    def score(self, memory, v, idx):
        """exp(<memory[idx[b, j]], v[b]> / T), shape (batch, 1 + K, 1)."""
        if self.score_all_rows:
            # (a copy: the backward pass needs the bank as it was before this step's update)
            dots = (v @ memory.t().to(v.dtype, copy=True)).gather(1, idx)
        else:
            weight = memory[idx.reshape(-1)].view(idx.shape[0], idx.shape[1], -1)
            dots = torch.bmm(weight, v.unsqueeze(2).to(weight.dtype)).squeeze(2)
        return torch.exp(dots / self.T).unsqueeze(2)

    @staticmethod
    def _normalise(out, z, mean, n_data):
        z_new = torch.where(z < 0, mean * n_data, z)
        z.copy_(z_new)
        return out / z_new

    def forward(self, v1, v2, y, idx=None, gather=None):
        """v1/v2: (batch, feat_dim) student/teacher embeddings; y: (batch,) their dataset indices.
        Returns (out_v1, out_v2), each (batch, 1 + K, 1): v1 scored against the teacher memory and
        v2 against the student memory."""
        if idx is None:
            idx = self.sample(y)
        out_v2 = self.score(self.memory_v1, v2, idx)
        out_v1 = self.score(self.memory_v2, v1, idx)
        means = torch.stack([out_v1.detach().mean(), out_v2.detach().mean()])
        if gather is not None:  # equal batches on every rank: the mean of means is the global mean
            means = gather(means.view(1, 2)).mean(0)
        out_v1 = self._normalise(out_v1, self.z_v1, means[0], self.n_data)
        out_v2 = self._normalise(out_v2, self.z_v2, means[1], self.n_data)
        self.update(v1, v2, y, gather)
        return out_v1, out_v2

    @torch.no_grad()
    def update(self, v1, v2, y, gather=None):
        """Momentum update of the rows y. gather(tensor) -> tensor is applied to v1, v2 and y
        first; under DDP it all-gathers so every rank's memory sees the whole global batch."""
        gather = gather or _identity
        v1, v2, y = gather(v1.detach()), gather(v2.detach()), gather(y)
        for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
            row = memory[y] * self.momentum + v * (1 - self.momentum)
            memory.index_copy_(0, y, row / row.norm(dim=1, keepdim=True))
