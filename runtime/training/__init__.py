"""Training: the Trainer, its backends, run folders, checkpoints, schedules.

May import every room below it: errors, modelio, ort, plugins, graphs, passes, autodiff, inference, data, tasks."""
