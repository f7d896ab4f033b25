"""Whether this CPU runs bf16 natively (AMX tiles or AVX512-BF16): there --fast turns bf16
autocast on; elsewhere bf16 is emulated and slower than fp32, so it stays off."""
import torch


def cpu_bf16_native():
    cpu = getattr(torch, 'cpu', None)
    for probe in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return torch.backends.mkldnn.is_available()
        except RuntimeError:  # a build without the probe's backend
            continue
    return False
