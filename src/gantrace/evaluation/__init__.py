"""Scoring: metrics (and their names), truth files, a dataset's scores, the leaderboard and
the ImageCLEF run-file rules."""
