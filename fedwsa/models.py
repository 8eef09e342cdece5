"""Models: a small MLP (digits), NIID-Bench's CNN, a VGG-style CNN, and the two models of
FL papers at scale: VGG-11 and ResNet-18. None uses BatchNorm: its running statistics do not
survive averaging across Non-IID clients (Hsieh et al. 2020, "The Non-IID Data Quagmire of
Decentralized Machine Learning", https://arxiv.org/abs/1910.00189), so ResNet-18 uses
GroupNorm and the VGGs no normalisation."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

MODELS: tuple[str, ...] = ("logreg", "mlp", "cnn", "vgg", "vgg11", "resnet18")


class MLP(nn.Module):
    """Flatten -> Linear(hidden) -> ReLU -> Linear(num_classes)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class NIIDBenchCNN(nn.Module):
    """The CNN of Flower's NIID-Bench baseline (Li et al. 2022, https://arxiv.org/abs/2102.02079).

    conv(6, k5) -> pool -> conv(16, k5) -> pool -> FC 120 -> FC 84 -> FC classes, ReLU;
    works for 28x28 (Fashion-MNIST, MNIST) and 32x32 (CIFAR) inputs.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def he_init_convs(module: nn.Module) -> None:
    """Start every conv of ``module`` as NIID-Bench's and torchvision's VGGs do: He et al.'s
    normal init, std ``sqrt(2 / (k * k * out_channels))`` (fan_out), zero biases.

    The VGGs here have no BatchNorm; with PyTorch's default conv init (std
    ``1 / sqrt(3 * fan_in)``) the signal shrinks two- to threefold per conv, so that at init the
    logits hardly depend on the input, the first conv's gradient is hundreds of times smaller
    relative to its weights, and SGD at lr 0.01 stays at chance (docs/RESULTS.md: `vgg11` in the
    WSA study; `vgg` on digits: loss 2.303 after 300 steps, 87 % test accuracy with this init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class VGGStyle(nn.Module):
    """VGG-style CNN without BatchNorm: [32,32,M,64,64,M,128,128,M] 3x3 convs, FC 256; convs
    start with :func:`he_init_convs`."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width in (32, 64, 128):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = width
        side = image_size // 8
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(128 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )
        he_init_convs(self.features)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """VGG-11 (Simonyan and Zisserman 2015, configuration A) for 32x32 inputs, without
    BatchNorm: 3x3 convs ``64,M,128,M,256,256,M,512,512,M,512,512,M``, then FC 512 -> 512 ->
    classes (the CIFAR variant of FL benchmarks). Inputs smaller than 32x32 (28x28
    Fashion-MNIST / MNIST) are zero-padded to 32x32 on every side equally, as LeNet-5 did
    for MNIST: five 2x2 poolings need 32.

    The convs start with :func:`he_init_convs`, the linear layers with PyTorch's default, as
    in NIID-Bench's VGG."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG11_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, num_classes)
        )
        he_init_convs(self.features)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h < 32 or w < 32:
            top, left = (32 - h) // 2, (32 - w) // 2
            x = F.pad(x, (left, 32 - w - left, top, 32 - h - top))
        return self.classifier(self.features(x))


GROUPS = 2
"""GroupNorm groups in ResNet-18 (our choice; every width 64-512 divides by it)."""


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with GroupNorm, and a 1x1 projection shortcut
    when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(GROUPS, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(GROUPS, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(GROUPS, c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with the CIFAR stem (one 3x3 conv, stride 1, no max-pool)
    and GroupNorm instead of BatchNorm; stages of 2 blocks at 64/128/256/512 channels,
    global average pooling, one linear layer. Any input of at least 8x8 fits."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.GroupNorm(GROUPS, 64), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        c = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c, width, stride), BasicBlock(width, width, 1)]
            c = width
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def check_input(name: str, input_shape: tuple[int, int, int]) -> None:
    """Raise ``ValueError`` (one line) unless model ``name`` takes inputs of this shape."""
    _, h, w = input_shape
    if name == "cnn" and (h != w or h < 16):
        raise ValueError(f"model 'cnn' needs square inputs of at least 16x16, got {h}x{w}")
    if name == "vgg" and (h != w or h % 8):
        raise ValueError(f"model 'vgg' needs square inputs with a side divisible by 8, got {h}x{w}")
    if name == "vgg11" and not (28 <= h <= 32 and 28 <= w <= 32):
        raise ValueError(f"model 'vgg11' needs inputs of 28x28 to 32x32 (padded to 32x32), got {h}x{w}")
    if name == "resnet18" and (h < 8 or w < 8):
        raise ValueError(f"model 'resnet18' needs inputs of at least 8x8, got {h}x{w}")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 64
) -> nn.Module:
    """Build a model by name for inputs of shape ``(channels, height, width)``."""
    check_input(name, input_shape)
    c, h, w = input_shape
    models: dict[str, Callable[[], nn.Module]] = {
        "logreg": lambda: nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes)),  # multinomial
        "mlp": lambda: MLP(c * h * w, num_classes, hidden),
        "cnn": lambda: NIIDBenchCNN(c, h, num_classes),
        "vgg": lambda: VGGStyle(c, h, num_classes),
        "vgg11": lambda: VGG11(c, num_classes),
        "resnet18": lambda: ResNet18(c, num_classes),
    }
    return models[name]()
