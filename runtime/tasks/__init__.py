"""Tasks: what a model does (classify, regress, tag, translate), its losses and metrics, evaluation.

May import: errors, modelio, ort, plugins, graphs, passes, inference, data."""
