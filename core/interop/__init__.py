"""Other tools' metadata, read and written: Automatic1111/Forge `parameters` (a1111),
ComfyUI's `prompt` and `workflow` graphs (comfyui: its two formats comfyui_nodes, its
reader comfyui_read and comfyui_read_inputs, its writer comfyui_write, and comfyui_check,
ComfyUI's own validation), InvokeAI (invokeai), Fooocus (fooocus) and NovelAI (novelai);
which one an image carries (detect, image_text); the one sampler table every format translates through (samplers); model names and hashes
resolved to the user's files (model_lookup); the job as other tools see it (chain).

Each reader gives an `reading.Imported`: the restored project, the tool it detected and
what it could not map. Anything malformed raises core.errors.ReadError. This package
imports nothing heavy at import time (core.schedulers imports the sampler table)."""
