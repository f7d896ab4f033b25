"""The engine: options, experiment building, training, run folders, search and reporting helpers.

Layers, from the bottom: models/, crd/, dataset/, distiller_zoo/, then helper/ and the scripts.
The lower layers import nothing of helper/ except its leaf helper/errors.py (UsageError and the
"did you mean" message), which imports nothing of the project.
"""
