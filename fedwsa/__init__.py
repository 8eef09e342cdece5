"""fedwsa core: Weight Scope Alignment for federated learning (torch + numpy only).

Paper: Xu, Li, Gan, Zhan, "Weight Scope Alignment: A Frustratingly Easy Method for
Model Merging", https://arxiv.org/abs/2408.12237. This package never imports flwr or
hydra; the Flower glue lives in ``strategies/`` and ``clients/``.
"""

__version__ = "0.1.0"
