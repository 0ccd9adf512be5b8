"""Entry points: absl flags -> Config -> one library call -> printed and recorded results."""
