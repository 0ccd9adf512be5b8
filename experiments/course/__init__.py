"""The course's teaching demos: each shows one lesson of fully connected networks."""
