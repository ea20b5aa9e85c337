"""Images in: folder listing and ingest, the simulated demo data, the HDF5 shard format
(`shards`: which shard, read/write, the check before streaming) and its streaming reader
(`loader`, torch)."""
