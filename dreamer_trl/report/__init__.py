"""What a run shows: videos, open-loop strips and learning curves."""
