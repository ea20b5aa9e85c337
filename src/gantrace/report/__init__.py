"""Figures for Snakemake's report (matplotlib, Agg canvas)."""
