"""Logit standardization (Sun et al., CVPR 2024): z-score each sample's logits before the
temperature softmax, so the student matches the teacher's logit relations, not their scale.

A switch (--logit_stand) on the methods whose class sets supports_logit_stand (kd and dkd, the
ones it was published for). The temperature (--kd_T, or --dkd_T) is then the base temperature.
"""


def standardize(logits, eps=1e-7, dim=-1):
    """(z - mean) / (eps + std) over the classes of each sample; std unbiased, as published."""
    mean = logits.mean(dim=dim, keepdim=True)
    std = logits.std(dim=dim, keepdim=True)
    return (logits - mean) / (eps + std)


# The published defaults of --base-temp and --kd-weight (logit-standardization-KD tools/train.py),
# used when --kd_T and the weights are omitted.
BASE_TEMP, KD_WEIGHT = 2.0, 9.0
