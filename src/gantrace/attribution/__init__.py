"""Attribution (generative-model fingerprints): clusterers, density re-ranking, the Marra
fingerprint clusterer, the number of generators and open-set attribution."""
