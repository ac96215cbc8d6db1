"""AVRSP: relevance-guided audio-visual video saliency prediction (pure PyTorch, no Ray)."""

__version__ = "0.1.0"
