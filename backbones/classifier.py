"""f_C: the recurrent classifier that fuses f_G and f_L features and predicts at every step."""
from __future__ import annotations

import torch
from torch import nn


class RecurrentClassifier(nn.Module):
    """f_C: GRU over concat[f_G pooled, f_L pooled] -> dropout -> linear, logits at every step t.

    The paper's f_C is GRU(3328 -> 1024) with dropout 0.8; the video's prediction is the last step's.
    ``local_dim = 0`` gives the global-only classifier (f_G + f_C, no patch).
    """

    def __init__(self, global_dim: int, local_dim: int, num_classes: int,
                 hidden_size: int = 1024, dropout: float = 0.8) -> None:
        super().__init__()
        self.global_dim, self.local_dim, self.hidden_size = global_dim, local_dim, hidden_size
        self.gru = nn.GRU(global_dim + local_dim, hidden_size, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))

    def _inputs(self, global_feats: torch.Tensor, local_feats: torch.Tensor | None) -> torch.Tensor:
        if self.local_dim == 0:
            return global_feats
        if local_feats is None:
            raise ValueError("this classifier fuses local features: local_feats is required")
        return torch.cat([global_feats, local_feats], dim=-1)

    def forward(self, global_feats: torch.Tensor, local_feats: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, Dg), (B, T, Dl) -> logits (B, T, classes), last hidden state (B, hidden)."""
        out, last = self.gru(self._inputs(global_feats, local_feats), None if hidden is None else hidden[None])
        return self.head(out), last[0]

    def step(self, global_feat: torch.Tensor, local_feat: torch.Tensor | None,
             hidden: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: (B, Dg), (B, Dl), (B, hidden) or None -> logits (B, classes), new hidden (B, hidden)."""
        logits, hidden = self.forward(global_feat[:, None], None if local_feat is None else local_feat[:, None], hidden)
        return logits[:, 0], hidden
