"""A run's config.json: written when the run starts, and compared with the flags when it resumes,
so a resumed run never mixes two configurations without saying so."""
import json
import os
from typing import Any, Dict, Iterable

import ml_collections


def flat(config: Any, prefix: str = "") -> Dict[str, Any]:
    """{dotted key: value} of a (nested) config or dict, values as JSON gives them back."""
    items = config.items() if hasattr(config, "items") else ()
    out = {}
    for key, value in items:
        if hasattr(value, "items"):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = json.loads(json.dumps(value))
    return out


def changed_keys(saved: Dict[str, Any], config: ml_collections.ConfigDict,
                 resumable: Iterable[str]) -> Dict[str, tuple]:
    """{key: (saved value, new value)} for the keys outside ``resumable`` that differ."""
    old, new = flat(saved), flat(config.to_dict())
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if key not in resumable and old.get(key) != new.get(key)}


def write_run_config(workdir: str, config: ml_collections.ConfigDict, *,
                     resumable: Iterable[str], force: bool = False, write: bool = True) -> None:
    """Write ``workdir/config.json``; when the run resumes (``workdir/checkpoints`` holds
    anything) and its config.json differs from ``config`` in keys outside ``resumable``, refuse
    (ValueError naming each key, its saved and its new value) unless ``force``. ``write`` False
    only checks (e.g. on hosts other than the first)."""
    path = os.path.join(workdir, "config.json")
    checkpoints = os.path.join(workdir, "checkpoints")
    resuming = os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
    if resuming and not force and os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        changed = changed_keys(saved, config, resumable)
        if changed:
            listed = ", ".join(f"`{key}` {old!r} -> {new!r}" for key, (old, new) in changed.items())
            raise ValueError(f"{workdir} holds a run started with other settings ({listed}); "
                             "resume it with its own settings, start a new workdir, or set "
                             "`force_resume` to continue with the new ones")
    if write:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            f.write(config.to_json_best_effort(indent=1))
