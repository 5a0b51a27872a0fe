"""Every experiment config key has a type-and-range rule that rejects a bad value with the key's
flag named; derived values follow their flags; a resumed run refuses changed settings."""
import json
import math

import ml_collections
import pytest

from experiments import sinusoid
from experiments.cli import flag_names
from experiments.configs import fewshot, omniglot, wheel_bandit
from experiments.run_config import write_run_config
from metabayes.config_checks import bad_values, check_config, integer, number

CONFIGS = {
    **{f"omniglot:{name}": (lambda name=name: omniglot.get_config(name), omniglot.RULES)
       for name in ("cpu_demo", "5w1s", "20w5s,maml")},
    **{f"fewshot:{name}": (lambda name=name: fewshot.get_config(name), fewshot.RULES)
       for name in ("miniimagenet_5w1s", "cifarfs_10w5s,maml")},
    "sinusoid": (sinusoid.get_config, sinusoid.RULES),
    "wheel_bandit": (wheel_bandit.get_config, wheel_bandit.RULES),
}


def with_value(config: ml_collections.ConfigDict, dotted_key: str, value) -> dict:
    """The config as a plain dict with ``dotted_key`` set to ``value`` (any type)."""
    values = config.to_dict()
    *parents, key = dotted_key.split(".")
    inner = values
    for parent in parents:
        inner = inner[parent]
    inner[key] = value
    return values


@pytest.mark.parametrize("name", CONFIGS)
def test_every_key_has_a_rule_that_rejects_a_bad_value_naming_its_flag(name):
    make_config, rules = CONFIGS[name]
    config = make_config()
    check_config(config, rules)   # the defaults pass, and no key lacks a rule
    walked = bad_values(rules)
    assert len(walked) >= len(config.keys())
    for key, bad in walked:
        with pytest.raises(ValueError) as info:
            check_config(with_value(config, key, bad), rules)
        line = flag_names(str(info.value), [key])
        assert line.startswith(f"--config.{key} must be "), line


def test_a_key_without_a_rule_is_refused():
    with pytest.raises(KeyError, match="new_key"):
        check_config({"steps": 3, "new_key": 1}, {"steps": integer(1)})


@pytest.mark.parametrize("rule,good,bad", [
    (integer(1), [1, 7], [0, -3, 1.5, True, "2", None]),
    (number(0.0, 1.0, open_low=True), [1e-9, 1.0, 1], [0.0, 1.5, float("nan"), float("inf"), "x"]),
])
def test_rules_accept_and_reject(rule, good, bad):
    assert all(rule.problem(value) is None for value in good)
    assert all(rule.problem(value) is not None for value in bad)


def test_the_issues_late_failures_now_fail_at_once():
    """prefetch=0 made an unbounded queue, log_every=0 a ZeroDivisionError, eval_every<=0 an
    error inside range; num_bins, eval_samples, eval_tasks = 0 failed after training."""
    config = omniglot.get_config("cpu_demo")
    for key, bad in [("prefetch", 0), ("log_every", 0), ("eval_every", -5), ("num_bins", 0),
                     ("eval_samples", 0), ("eval_tasks", 0)]:
        with pytest.raises(ValueError, match=f"`{key}` must be an integer >= 1"):
            check_config(with_value(config, key, bad), omniglot.RULES)


def test_derived_values_follow_the_flags_they_come_from():
    config = omniglot.get_config("5w1s")
    default = omniglot.resolve(config)
    with config.unlocked():
        config.inner_lr = default.inner_lr / 4
    moved = omniglot.resolve(config)
    assert moved.kl_weight == pytest.approx(4 * default.kl_weight)   # β = pull·σ_θ²/inner_lr
    assert moved.inner_lr_log_sigma == pytest.approx(default.inner_lr_log_sigma / 4)
    with config.unlocked():
        config.steps, config.kl_weight, config.num_tasks = 10, 0.5, None
    explicit = omniglot.resolve(config)
    assert explicit.kl_weight == 0.5 and explicit.num_tasks == 10 * config.meta_batch


def test_selected_settings_keep_the_published_step_values():
    """ABML's selection halves inner_lr but keeps β and log σ's step at the published step
    size's values, exactly (the README's numbers were made with them)."""
    resolved = omniglot.resolve(omniglot.get_config("5w1s"))
    published = 0.4 / 5
    assert resolved.inner_lr == published / 2
    assert resolved.kl_weight == 0.05 * math.exp(-9.0) / published
    assert resolved.inner_lr_log_sigma == published / 20


def test_a_resumed_run_refuses_changed_settings_but_allows_safe_ones(tmp_path):
    config = omniglot.resolve(omniglot.get_config("cpu_demo"))
    resumable = omniglot.RESUMABLE_CHANGES
    write_run_config(str(tmp_path), config, resumable=resumable)
    (tmp_path / "checkpoints" / "3").mkdir(parents=True)      # a checkpoint: the run resumes
    extended = config.copy_and_resolve_references()
    with extended.unlocked():
        extended.steps, extended.eval_tasks = 600, 40
    write_run_config(str(tmp_path), extended, resumable=resumable)
    changed = extended.copy_and_resolve_references()
    with changed.unlocked():
        changed.inner_lr, changed.num_tasks = 0.01, 99
    with pytest.raises(ValueError) as info:
        write_run_config(str(tmp_path), changed, resumable=resumable)
    line = flag_names(str(info.value), changed.keys())
    assert "--config.inner_lr 0.04 -> 0.01" in line and "--config.num_tasks 1200 -> 99" in line
    assert "--config.force_resume" in line
    assert json.load(open(tmp_path / "config.json"))["inner_lr"] == 0.04   # not overwritten
    write_run_config(str(tmp_path), changed, resumable=resumable, force=True)
    assert json.load(open(tmp_path / "config.json"))["inner_lr"] == 0.01
