"""The training core: settings and Config, data, activations, models, augmentations, losses,
optimisers and schedules, training, device layout, the hand-written chain rule, memory checks.
Imports nothing outside core."""
