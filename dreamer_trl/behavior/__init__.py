"""What acts: actors, the CEM planner, the acting policy (filter + behaviour + noise) and the imagination env."""
