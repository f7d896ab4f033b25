"""DIST (Huang et al., NeurIPS 2022): match the teacher's class relations per sample (inter-class)
and the sample relations per class (intra-class) by Pearson correlation of the softmaxes.

The intra-class term correlates the samples of one batch: under DDP, of one process's batch."""
import torch.nn.functional as F

from distiller_zoo.base import Distiller, Option


def pearson(a, b, eps=1e-8):
    """Row-wise Pearson correlation: cosine of the mean-centred rows, eps added to the norm product."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(y_s, y_t):
    return 1 - pearson(y_s, y_t).mean()


def intra_class_relation(y_s, y_t):
    return inter_class_relation(y_s.t(), y_t.t())


def dist_loss(s_logit, t_logit, beta, gamma, tau):
    """tau^2 * (beta * inter + gamma * intra) on softmax(z / tau); the tau^2 is the published one."""
    y_s = F.softmax(s_logit / tau, dim=1)
    y_t = F.softmax(t_logit / tau, dim=1)
    return tau ** 2 * (beta * inter_class_relation(y_s, y_t) + gamma * intra_class_relation(y_s, y_t))


class DISTMethod(Distiller):
    """Logits only. Published CIFAR setting: DIST(1, 1, tau=4) at loss weight 2 (-b 2), CE weight 1."""

    name = 'dist'
    paper = 'Huang et al., 2022, Knowledge Distillation from A Stronger Teacher'
    gamma, alpha, beta = 1.0, 0.0, 2.0
    order = 16
    options = (Option('dist_beta', published=1.0, tag='b', help='DIST weight of inter-class relation (default 1)'),
               Option('dist_gamma', published=1.0, tag='g', help='DIST weight of intra-class relation (default 1)'),
               Option('dist_tau', published=4.0, check='positive', tag='t', help='DIST temperature (default 4)'))

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        self.dist_beta, self.dist_gamma, self.tau = opt.dist_beta, opt.dist_gamma, opt.dist_tau

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return dist_loss(s_logit, t_logit, self.dist_beta, self.dist_gamma, self.tau)
