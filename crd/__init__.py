"""CRD (Tian et al., ICLR 2020): contrastive loss, memory bank, and the small auxiliary
modules other methods train (FitNet's ConvReg, AB's Connector, FT's Paraphraser/Translator)."""
from crd.criterion import CRDLoss, ContrastLoss, Embed, LinearEmbed, Normalize
from crd.memory import ContrastMemory
from crd.modules import ConvReg, Connector, Paraphraser, Translator

__all__ = ['CRDLoss', 'ContrastLoss', 'ContrastMemory', 'Embed', 'LinearEmbed', 'Normalize',
           'ConvReg', 'Connector', 'Paraphraser', 'Translator']
