"""Models: video classifiers (a timm ViT per frame + the BERT temporal head, R(2+1)D-34 with IG65M
weights, DarkLight's two-stream), the teacher T = T_c(T_e(x)), the enhancers (Zero-DCE, Zero-DCE++
from the original checkpoints, gamma) and zero-reference fitting.

Imports only darknb's top level, never data/ or the engine: a model takes clips, not datasets.
"""
