"""One training kit for every network gantrace trains: checkpoints, resumable epochs,
seeding; and the feature autoencoder."""
