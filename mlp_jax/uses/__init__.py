"""Uses of a trained model: evaluation and committees, a user's digit images, robustness,
benchmarks, teaching helpers. Imports core and store."""
