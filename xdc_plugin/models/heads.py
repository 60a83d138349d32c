"""Classification heads trained on cluster pseudo-labels.

``XDCModel`` builds one per route from its ``head`` config, adding
``in_dim`` (the encoder's ``feat_dim``) and ``num_classes`` (the source's
k); a head maps ``(B, in_dim)`` features to ``(B, num_classes)`` logits and
has ``reset_parameters()``.
"""
import torch
from torch import nn

from xdc_plugin.encoders import init_classifier
from xdc_plugin.registry import MODELS


@MODELS.register_module()
class LinearHead(nn.Module):
    """Optional dropout, then one linear layer ``in_dim -> num_classes``.

    Pseudo-label ids are arbitrary after each re-clustering, so the head is
    re-initialised (``reset_parameters``) every time the labels change;
    DeepCluster does the same. That XDC does so is our choice (not
    confirmed by the sources we could read).
    """

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights ~ N(0, 0.01), bias 0."""
        init_classifier(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))
