"""Lung masks: classical pseudo-masks and the U-Net trained on them (or on given masks)."""
