"""Ray actors: one stateful actor per dataset that runs its clustering and merging tasks in order."""
