rule ingest:
    """Decode one shard's images once; record every file's status (bad files never stop a shard)."""
    input:
        shard_files,
    output:
        images=f"{R}/{{dataset}}/images/{{shard}}.h5",
        status=f"{R}/{{dataset}}/images/{{shard}}.parquet",
    log:
        f"{R}/logs/ingest/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{R}/timings/ingest/{{dataset}}/{{shard}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        table=lambda wc: images(wc.dataset).query(f"shard == {wc.shard}"),
        ingest=INGEST,
    script:
        "../scripts/ingest.py"


rule manifest:
    """Gather shard status; stop here, listing every bad file, before any later stage."""
    input:
        status=lambda wc: expand(
            f"{R}/{{dataset}}/images/{{shard}}.parquet",
            dataset=wc.dataset,
            shard=shards(wc.dataset),
        ),
        groups=lambda wc: (groups_of(wc.dataset) or {}).get("csv", []),
    output:
        manifest=f"{R}/{{dataset}}/manifest.parquet",
        rejected=f"{R}/{{dataset}}/rejected.parquet",
    log:
        f"{R}/logs/manifest/{{dataset}}.log",
    benchmark:
        f"{R}/timings/manifest/{{dataset}}.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        invalid_images=INGEST["invalid_images"],
        groups=lambda wc: groups_of(wc.dataset),
    script:
        "../scripts/manifest.py"
