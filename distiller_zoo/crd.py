import argparse

from crd.criterion import CRDLoss
from distiller_zoo.base import Distiller, Option


class CRDMethod(Distiller):
    """Pooled vectors through trainable embeddings into a two-sided contrastive memory.

    Set `gather` (tensor -> tensor, e.g. a DDP all-gather) so the memory update sees the whole
    global batch."""

    name = 'crd'
    paper = 'Tian et al., 2020, Contrastive Representation Distillation'
    order = 7
    beta = 0.8
    needs_contrast = True
    options = (Option('mode', type=str, default='exact', choices=['exact', 'relax'], help='CRD positive'),
               Option('nce_k', type=int, default=16384, check='positive', help='CRD negatives'),
               Option('nce_t', default=0.07, help='CRD temperature'),
               Option('nce_m', default=0.5, help='CRD memory momentum'))

    def __init__(self, opt, s_shapes, t_shapes, n_data):
        super().__init__(opt, s_shapes, t_shapes, n_data)
        crd_opt = argparse.Namespace(s_dim=s_shapes[-1][1], t_dim=t_shapes[-1][1], n_data=n_data,
                                     feat_dim=opt.feat_dim, nce_k=opt.nce_k, nce_t=opt.nce_t,
                                     nce_m=opt.nce_m)
        self.criterion = CRDLoss(crd_opt)
        self.trainable['embed_s'] = self.criterion.embed_s
        self.trainable['embed_t'] = self.criterion.embed_t
        self.gather = None

    def method_loss(self, s_feats, s_logit, t_feats, t_logit, batch):
        return self.criterion(s_feats[-1], t_feats[-1], batch['index'], batch.get('contrast_idx'),
                              self.gather)
