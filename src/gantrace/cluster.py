"""Cluster settings checked when the workflow is parsed, before any job is submitted.

`profiles/slurm/config.yaml` names the SLURM partitions and account by environment
variables (`$GANTRACE_SLURM_CPU_PARTITION`, `$GANTRACE_SLURM_GPU_PARTITION`,
`$GANTRACE_SLURM_ACCOUNT`), so one profile serves every site and user unchanged. Snakemake
expands them only when a job's resources are evaluated and keeps an unset one as the
literal `$NAME`, which would reach `sbatch -p` after the local steps had run; this check
refuses it at parse time instead, naming each key and variable.
"""

import os
import re

from gantrace.errors import ConfigError

PREFIX = "slurm_"  # slurm_partition, slurm_account, slurm_extra, ... (the plugin's resources)
_VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\})")


def unset_variables(value, environ=None):
    """Names of the environment variables (`$NAME`, `${NAME}`) in `value` that are unset."""
    environ = os.environ if environ is None else environ
    if not isinstance(value, str):
        return []
    names = (a or b for a, b in _VARIABLE.findall(value))
    return [n for n in names if n not in environ]


def unset_slurm_resources(default_resources, set_resources, environ=None):
    """(where, key, raw value, unset variables) of each SLURM resource left unset.

    `default_resources` maps resource names to values, `set_resources` rules to such
    mappings; values are plain or Snakemake `Resource`s (whose `raw` is the profile text).
    """
    places = [("default-resources", default_resources or {})]
    places += [(f"set-resources: {r}", res) for r, res in sorted((set_resources or {}).items())]
    found = []
    for where, resources in places:
        for key, value in resources.items():
            raw = getattr(value, "raw", value)
            missing = unset_variables(raw, environ) if key.startswith(PREFIX) else []
            if missing:
                found.append((where, key, raw, missing))
    return found


def check_slurm_resources(settings, environ=None):
    """Refuse SLURM resources (`slurm_partition`, `slurm_account`, ...) whose environment
    variable is unset; an empty one is a choice (no account: submit without `-A`).

    `settings` is Snakemake's `workflow.resource_settings` (its `default_resources` and
    per-rule `overwrite_resources`, from the profile or the command line).
    """
    found = unset_slurm_resources(settings.default_resources, settings.overwrite_resources, environ)
    if not found:
        return
    lines = [f"  {where}: {key}: {raw}" for where, key, raw, _ in found]
    names = sorted({n for *_, missing in found for n in missing})
    raise ConfigError(
        "SLURM settings left unset (placeholders of profiles/slurm/config.yaml):\n"
        + "\n".join(lines)
        + f"\nSet {', '.join(names)} (`sinfo -s` lists partitions, "
        "`sacctmgr show assoc user=$USER` your accounts; an empty GANTRACE_SLURM_ACCOUNT "
        "submits without an account), or write the values into the profile."
    )
