"""Recommendations: heuristic fallback, trained models, serving, events and the training pipeline."""
