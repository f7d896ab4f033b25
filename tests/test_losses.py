"""Every parameter-free loss, CRD's NCE loss and MC against the published implementation's
values (tests/fixtures/golden_losses.pt, produced by RepDistiller / CRD-EMKD)."""
import os

import pytest
import torch

from conftest import FIXTURES
from crd import ContrastLoss
from distiller_zoo import (ABLoss, Attention, Correlation, DistillKL, FactorTransfer, FSP,
                           HintLoss, MilestoneChecking, NSTLoss, PKT, RKDLoss, Similarity)

GOLDEN = torch.load(os.path.join(FIXTURES, 'golden_losses.pt'), weights_only=False)
IN = GOLDEN['inputs']
S, T = IN['s_feats'], IN['t_feats']


def compute(case):
    if case == 'kd_T4':
        return DistillKL(4)(IN['s_logit'], IN['t_logit'])
    if case == 'kd_T1':
        return DistillKL(1)(IN['s_logit'], IN['t_logit'])
    if case == 'hint_mse':
        return HintLoss()(S[2], T[2])
    if case == 'attention_p2':
        return Attention()(S[1:-1], T[1:-1])
    if case == 'attention_spatial_mismatch':
        return Attention()([S[2]], [IN['t_small']])
    if case == 'similarity':
        return Similarity()([S[-2]], [T[-2]])
    if case == 'correlation':
        return Correlation()(S[-1], T[-1])
    if case == 'rkd':
        return RKDLoss()(S[-1], T[-1])
    if case == 'pkt':
        return PKT()(S[-1], T[-1])
    if case == 'nst':
        return NSTLoss()(S[1:-1], T[1:-1])
    if case == 'factor_transfer':
        return FactorTransfer()(S[-2], T[-2])
    if case == 'ab_margin1':
        return ABLoss(3)(S[1:-1], [t - 0.5 for t in T[1:-1]])
    if case == 'fsp':
        fsp = FSP([f.shape for f in S[:-1]], [f.shape for f in T[:-1]])
        return fsp(S[:-1], T[:-1])
    if case == 'crd_contrast_loss_n50000':
        return ContrastLoss(50000)(IN['contrast_x'])
    if case == 'mc_T4_myresnet20_3_7_2':
        # capacity weights base_depth / block_depth for resnet20's [3, 3, 3] and 3,7,2
        return MilestoneChecking(4, [3 / 3, 3 / 7, 3 / 2])(S, T)
    raise KeyError(case)


CASES = ['kd_T4', 'kd_T1', 'hint_mse', 'attention_p2', 'attention_spatial_mismatch', 'similarity',
         'correlation', 'rkd', 'pkt', 'nst', 'factor_transfer', 'ab_margin1', 'fsp',
         'crd_contrast_loss_n50000', 'mc_T4_myresnet20_3_7_2']


def test_every_golden_case_is_covered():
    assert sorted(CASES) == sorted(GOLDEN['expected'])


@pytest.mark.parametrize('case', CASES)
def test_golden(case):
    got, want = compute(case), GOLDEN['expected'][case]
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=0)
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
