"""Handoff's Qt-free core: projects, models, handoffs and the engine that runs them.

Nothing here imports Qt, and torch/diffusers are imported only inside the functions
that need them, so the window can start without waiting for torch.
"""
