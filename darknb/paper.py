"""What the paper says: its published numbers and the input sizes it names (PAPER.md).

Published numbers are labelled ``reported`` wherever they appear; everything darknb computes is
``measured``.
"""

from __future__ import annotations

__all__ = ["ARID_FRAME", "PAPER_CLIP", "REPORTED", "reported_table"]

PAPER_CLIP = (3, 64, 112, 112)   # C, T, H, W of the paper's input
ARID_FRAME = (240, 320)          # ARID's native H, W: the paper enhances before resizing

# Published numbers (PAPER.md "Reported results"); every row is labelled "reported".
REPORTED = [
    # dataset, method, top1, top5
    ("ARID", "I3D-RGB", 68.29, None),
    ("ARID", "I3D two-stream", 72.78, None),
    ("ARID", "3D-ResNext-101", 74.73, None),
    ("ARID", "DarkLight", 94.04, None),
    ("ARID", "DTCM", 96.36, None),
    ("ARID", "R(2+1)D-GCN+BERT", 96.60, None),
    ("ARID", "R(2+1)D + BERT (DarkLight setting)", 92.44, None),
    ("ARID", "DL-KDD teacher: ZeroDCE + ViT + BERT", 95.87, None),
    ("ARID", "DL-KDD student: ViT + BERT", 97.36, None),
    ("ARID v1.5", "I3D-RGB", 48.75, None),
    ("ARID v1.5", "I3D two-stream", 51.24, None),
    ("ARID v1.5", "DarkLight", 84.13, None),
    ("ARID v1.5", "R(2+1)D-GCN+BERT", 86.93, None),
    ("ARID v1.5", "DL-KDD student: ViT + BERT", 88.15, None),
    ("ARID v1.5", "ActLumos (arXiv 2502.03724v2)", 88.27, None),
    ("Dark-48", "I3D-RGB", 32.25, 65.35),
    ("Dark-48", "3D-ResNext-101", 37.23, 68.86),
    ("Dark-48", "DarkLight", 42.27, 70.47),
    ("Dark-48", "DTCM", 46.68, 75.92),
    ("Dark-48", "DL-KDD student: ViT + BERT", 51.14, 78.49),
]



def reported_table():
    """The published rows as a DataFrame (``source="reported"``, dataset, method, top-1, top-5)."""
    import pandas as pd  # lazy: config-level callers need no pandas

    return pd.DataFrame([{"source": "reported", "dataset": d, "method": m, "top1": t1, "top5": t5}
                         for d, m, t1, t5 in REPORTED])
