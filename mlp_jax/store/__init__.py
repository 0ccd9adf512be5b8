"""What a run leaves behind: run records (appended whole or not at all), work folders (lock and
settings, verified checkpoints, event log), and running a training to its record. Imports core."""
