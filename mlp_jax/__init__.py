"""mlp_jax: multilayer perceptrons on MNIST with JAX, Flax and Optax."""
