"""CytoImageNet's EfficientNet-B0 as shipped in the bioimage.io package (the architecture of its
``pytorch_state_dict`` weights). Standalone on purpose, torch and torchvision only: the file is
copied into the package and imported by bioimage.io tools that know nothing of this project.
"""

import torch
import torchvision


class CytoImageNetEfficientNetB0(torch.nn.Module):
    """torchvision's ``efficientnet_b0`` with its parameter names (the training's ``model.pt``
    loads as is); ``forward`` returns the 1280-d global-average-pooled penultimate features and
    the class logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        net = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
        self.features, self.avgpool, self.classifier = net.features, net.avgpool, net.classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.flatten(self.avgpool(self.features(x)), 1)
        return features, self.classifier(features)
