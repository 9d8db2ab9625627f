"""Data: list files, clip sampling, the clip dataset, named datasets, the frame cache, the loader,
frame-exact video reading, the synthetic miniature and a run's data protocol.

Imports only darknb's top level (config, errors, files, registry), never models/ or the engine.
"""
