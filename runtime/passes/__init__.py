"""Model-to-model rewrites: runtime compatibility, plugin inlining, the Relu mask, gradient forms,
constant folding, inference forms; and the named pipelines that chain them.

Each pass returns a new model and leaves its argument as it was. May import: errors, modelio,
ort, plugins, graphs."""
