"""One training kit for every network gantrace trains (the U-Net, fine-tuned CNNs, the
feature autoencoder, the benchmark generators):

- `checkpoint`: the training state written after every epoch / N steps and resumed;
- `epochs`: `EpochShuffle`, an epoch order that depends on (seed, epoch) only;
- `seeding`: `seed_everything`;
- `optim`: loss scaler, cosine LR schedule, one optimiser step;
- `autoencoder`: the feature autoencoder (reducer and membership scorer).

Submodules are imported where used: `gantrace.nn.autoencoder` keeps torch out of jobs that
never fit it.
"""
