"""Auxiliary modules that feature-distillation methods train next to the student."""
from torch import nn

from helper.errors import UsageError


class ConvReg(nn.Module):
    """FitNet's regressor: maps a student map (N, C, H, W) onto the teacher's shape.

    Halves the size with a stride-2 conv, doubles it with a transposed conv, or shrinks it with
    a valid conv of kernel (1 + sH - tH, 1 + sW - tW); then BatchNorm and optionally ReLU.
    """

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        _, s_c, s_h, s_w = s_shape
        _, t_c, t_h, t_w = t_shape
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise UsageError(f'cannot regress a student map of {s_h}x{s_w} onto a teacher map of '
                             f'{t_h}x{t_w} (needs half, double or smaller teacher size)')
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class Connector(nn.Module):
    """AB's per-stage connectors: identity where channels and size already match, else a ConvReg
    without ReLU (the AB loss needs the sign of the pre-activation)."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        if len(s_shapes) != len(t_shapes):
            raise UsageError(f'AB needs as many student stages as teacher stages, got '
                             f'{len(s_shapes)} and {len(t_shapes)}')
        self.s_shapes, self.t_shapes = s_shapes, t_shapes
        self.connectors = nn.ModuleList(
            nn.Identity() if s[1] == t[1] and s[2] == t[2] else ConvReg(s, t, use_relu=False)
            for s, t in zip(s_shapes, t_shapes))

    def forward(self, g_s):
        return [conn(f) for conn, f in zip(self.connectors, g_s)]


def _conv_stack(conv, in_c, mid_c, out_c, use_bn):
    layers = []
    for c_in, c_out in ((in_c, mid_c), (mid_c, out_c), (out_c, out_c)):
        layers += [conv(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out) if use_bn else nn.Identity(),
                   nn.LeakyReLU(0.1, inplace=True)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """FT's paraphraser: a conv autoencoder on the teacher's last map; the encoder output (k * C
    channels) is the teacher factor."""

    def __init__(self, t_shape, k=0.5, use_bn=False):
        super().__init__()
        c = t_shape[1]
        f = int(c * k)
        self.encoder = _conv_stack(nn.Conv2d, c, c, f, use_bn)
        self.decoder = _conv_stack(nn.ConvTranspose2d, f, f, c, use_bn)

    def forward(self, f_s, is_factor=False):
        factor = self.encoder(f_s)
        if is_factor:
            return factor
        return factor, self.decoder(factor)


class Translator(nn.Module):
    """FT's translator: maps the student's last map to a factor shaped like the teacher's."""

    def __init__(self, s_shape, t_shape, k=0.5, use_bn=True):
        super().__init__()
        c = s_shape[1]
        self.encoder = _conv_stack(nn.Conv2d, c, c, int(t_shape[1] * k), use_bn)

    def forward(self, f_s):
        return self.encoder(f_s)
