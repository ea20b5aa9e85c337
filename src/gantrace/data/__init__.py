"""Images in: folder listing and ingest, the simulated demo data, the HDF5 shard format."""
