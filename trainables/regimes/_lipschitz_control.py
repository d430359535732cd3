"""Adaptive ψ (eq. 15, lipschitz paper §III-F; ALGORITHMS.md §5.1): an integrating controller over batches.

    I_b = max(0, I_{b−1} + clip(−ln(L_b / L_target), −ε_worse, +ε_better)),  I_0 = 0
    ψ_b = k_ψ0 · exp(k_ψ · I_b)

L_b is the batch's classification loss (mean CE on the training batch, adversarial images included,
L_adv and L_out excluded). As in the authors' code, I is updated with the current batch's loss *before*
that batch's L_adv is formed (ψ_b already reflects L_b), is clamped at 0 every batch (so k_ψ0 is the minimum
strength) and persists across epochs and checkpoints (``state_dict``).

The integral lives on the loss's device (float64): no host sync per step. Under DDP each rank's L_b is
averaged over ranks first (``sync=True``), so every rank uses the same ψ, as the authors' single-process
DataParallel did with its whole-batch loss.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist


class AdaptivePsi:
    def __init__(self, l_target: float, k_psi0: float = 220.0, k_psi: float = 0.02, eps_better: float = 1.0,
                 eps_worse: float = 0.01, sync: bool = True):
        self.l_target, self.k_psi0, self.k_psi = l_target, k_psi0, k_psi
        self.eps_better, self.eps_worse, self.sync = eps_better, eps_worse, sync
        self.integral = torch.zeros((), dtype=torch.float64)

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Feed one batch's classification loss L_b (0-d tensor); returns ψ_b as a 0-d float32 tensor."""
        l_b = loss.detach().to(torch.float64)
        if self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            l_b = l_b.clone()
            dist.all_reduce(l_b)
            l_b = l_b / dist.get_world_size()
        step = (-(l_b / self.l_target).log()).clamp(-self.eps_worse, self.eps_better)
        self.integral = (self.integral.to(l_b.device) + step).clamp(min=0)
        return self.psi_tensor()

    def psi_tensor(self) -> torch.Tensor:
        return (self.k_psi0 * torch.exp(self.k_psi * self.integral)).float()

    @property
    def psi(self) -> float:
        return self.k_psi0 * math.exp(self.k_psi * float(self.integral))

    def state_dict(self) -> dict:
        return {"integral": float(self.integral)}

    def load_state_dict(self, state: dict) -> None:
        self.integral = torch.tensor(float(state["integral"]), dtype=torch.float64, device=self.integral.device)
