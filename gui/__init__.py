"""The Handoff studio window: a thin Qt view over core/.

Nothing here imports torch or diffusers at module level; the worker thread does, so the
window appears before the heavy libraries load.
"""
