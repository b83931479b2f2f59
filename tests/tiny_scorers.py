"""A tiny random CLIPModel (with its CLIPProcessor) and a random aesthetic head, built from
config and saved the way a user's files are, for the scorer tests. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

from core.local_tokenizers import clip_tokenizer
from tests.tiny_pipelines import WORDS


def build_clip(dest: Path, projection: int = 768, seed: int = 0) -> Path:
    """A CLIP folder; projection 768 is what the aesthetic MLP reads (a ViT-L/14's width)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = clip_tokenizer(WORDS)
    config = CLIPConfig(
        text_config=dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                         num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tok), max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=14 if projection == 768 else 8),
        projection_dim=projection)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(dest)
    return dest


def aesthetic_state(seed: int = 0) -> dict:
    """Random weights in the improved-aesthetic-predictor's key layout (layers.N.weight)."""
    import torch

    torch.manual_seed(seed)
    widths = (768, 1024, 128, 64, 16, 1)
    state = {}
    for index, (a, b) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):
        state[f"layers.{index}.weight"] = torch.randn(b, a) / a ** 0.5
        state[f"layers.{index}.bias"] = torch.randn(b) * 0.1
    return state
