import json

from gantrace.runlog import logged
from gantrace.weights import fetch, required_weights

with logged(snakemake.log[0]) as log:
    fetched = fetch(required_weights(dict(snakemake.params.features)), log=log)
    with open(snakemake.output[0], "w") as fh:
        json.dump(fetched, fh, indent=2, sort_keys=True)
        fh.write("\n")
