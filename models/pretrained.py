"""torchvision's pretrained ImageNet teachers as --path_t.

`--path_t torchvision:resnet34` takes the official ImageNet weights through torchvision's weights
API: from torch hub's cache when the file is there, else downloaded into it. `--path_t FILE`
with torchvision's file name (resnet34-b627a593.pth, or the older resnet34-333f7ec4.pth) names
its architecture itself. The weights are IMAGENET1K_V1, the ones the published ImageNet KD
results used (ResNet50's V2 weights are a different, stronger teacher).
"""
import os
import re

from helper.errors import UsageError

PREFIX = 'torchvision:'
# torchvision name -> zoo name
ARCHITECTURES = {'resnet18': 'resnet18_imagenet', 'resnet34': 'resnet34_imagenet',
                 'resnet50': 'resnet50_imagenet'}
_FILE = re.compile(r'^(resnet18|resnet34|resnet50)-[0-9a-f]{8,}\.pth$')


def is_torchvision(path_t):
    return isinstance(path_t, str) and path_t.startswith(PREFIX)


def name_from_file(path):
    """The zoo name of a file saved under torchvision's name (resnet34-b627a593.pth), else None."""
    match = _FILE.match(os.path.basename(str(path)))
    return ARCHITECTURES[match.group(1)] if match else None


def _arch(path_t):
    arch = path_t[len(PREFIX):]
    if arch not in ARCHITECTURES:
        raise UsageError(f'--path_t {path_t}: torchvision teachers are '
                         + ', '.join(PREFIX + a for a in ARCHITECTURES))
    return arch


def model_name(path_t):
    """The zoo architecture of a torchvision:NAME teacher (checked, no download)."""
    return ARCHITECTURES[_arch(path_t)]


def weights_url(arch):
    from torchvision import models as tv_models
    return tv_models.get_model_weights(arch).IMAGENET1K_V1.url


def cache_dir():
    import torch
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def resolve(path_t, download=True):
    """The local file of a torchvision:NAME teacher (fetched when absent and download is true);
    any other path is returned unchanged."""
    if not is_torchvision(path_t):
        return path_t
    url = weights_url(_arch(path_t))
    path = os.path.join(cache_dir(), os.path.basename(url))
    if os.path.isfile(path):
        return path
    if download:
        import torch
        try:
            os.makedirs(cache_dir(), exist_ok=True)
            torch.hub.download_url_to_file(url, path, hash_prefix=_hash_prefix(path))
            return path
        except Exception:  # offline, proxy, partial download: say where the file goes
            pass
    raise UsageError(f'--path_t {path_t}: {os.path.basename(path)} could not be downloaded; '
                     f'put it (from {url}) in {cache_dir()}/, or pass its path as --path_t')


def _hash_prefix(path):
    # torchvision's file names end in the first hex digits of the file's SHA-256
    return os.path.basename(path).rsplit('-', 1)[1].split('.')[0]
