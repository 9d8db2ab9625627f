"""The engine: building a run (classifier, optimiser, schedule, accelerator), the training loop,
evaluation, checkpoints, distillation, the teacher's enhanced view, the DL-KDD stages,
pre-training, inference on your own videos, and independent runs side by side.

Imports data/, models/ and the top level; never study/ or report/.
"""
