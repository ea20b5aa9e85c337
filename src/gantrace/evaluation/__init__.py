"""Scoring: metrics, truth files, the leaderboard and the ImageCLEF run-file rules."""
