"""Inference: sessions with checked feeds, batched runs, step-by-step decoding.

May import: errors, modelio, ort, plugins, graphs, passes."""
