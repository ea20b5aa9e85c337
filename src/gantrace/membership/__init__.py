"""Membership (training-data fingerprints): scorers, thresholds and the method object."""
