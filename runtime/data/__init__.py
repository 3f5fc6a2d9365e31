"""Datasets: loading arrays and checking them against a model before step 1.

May import: errors, modelio."""
