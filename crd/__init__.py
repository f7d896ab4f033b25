"""CRD (Tian et al., ICLR 2020): contrastive loss and memory bank."""
from crd.criterion import CRDLoss, ContrastLoss, Embed, LinearEmbed, Normalize
from crd.memory import ContrastMemory

__all__ = ['CRDLoss', 'ContrastLoss', 'ContrastMemory', 'Embed', 'LinearEmbed', 'Normalize']
