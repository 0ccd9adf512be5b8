"""The course's teaching demos: each shows one lesson of fully connected networks, writing under
runs/teaching/ unless --out says otherwise (results/README.md: the commands that published them)."""
