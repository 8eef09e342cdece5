"""Models: a small MLP (digits), NIID-Bench's CNN, and a VGG-style CNN without BatchNorm."""

from __future__ import annotations

from torch import Tensor, nn

MODELS: tuple[str, ...] = ("mlp", "cnn", "vgg")


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


class VGGStyle(nn.Module):
    """VGG-style CNN without BatchNorm: [32,32,M,64,64,M,128,128,M] 3x3 convs, FC 256."""

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

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 64
) -> nn.Module:
    """Build a model by name for inputs of shape ``(channels, height, width)``."""
    c, h, w = input_shape
    if name == "mlp":
        return MLP(c * h * w, num_classes, hidden)
    if name == "cnn":
        if h != w or h < 16:
            raise ValueError(f"model 'cnn' needs square inputs of at least 16x16, got {h}x{w}")
        return NIIDBenchCNN(c, h, num_classes)
    if name == "vgg":
        if h != w or h % 8:
            raise ValueError(f"model 'vgg' needs square inputs with a side divisible by 8, got {h}x{w}")
        return VGGStyle(c, h, num_classes)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
