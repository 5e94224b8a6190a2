"""Evaluation shared by every model kind: confusion matrix, per-class metrics, galleries."""
