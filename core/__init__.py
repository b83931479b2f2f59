"""Handoff's Qt-free core: projects, models, handoffs and the engine that runs them.

Nothing here imports Qt, and torch/diffusers are imported only inside the functions
that need them, so the window can start without waiting for torch.
"""

from core import torchvision_guard as _torchvision_guard

# Before anything imports transformers or diffusers: a torchvision built for another torch
# must read as absent to them (core/torchvision_guard.py says why).
_torchvision_guard.install()
