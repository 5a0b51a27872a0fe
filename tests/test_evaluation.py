"""Out-of-episode scoring and batch norm's two modes (MATH.md §5).

A task is adapted once; its in-episode and out-of-episode queries go through the network in one
batch. With the transductive batch norm every query's prediction then depends on the others
(the unseen classes are normalised by the statistics of the mixture, not by their own); with
``batch_norm="support"`` none does.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.evaluation import classification_evaluation, posterior_scales, split_out_of_episode
from metabayes.evaluation.metrics import predictive_entropy
from metabayes.layers import BatchNorm
from metabayes.tasks import Task

WAYS, SHOTS, QUERY, TASKS = 2, 1, 3, 2


def learner(algorithm, **options):
    model = mb.Conv4(num_classes=WAYS, filters=4, blocks=2)
    if algorithm == "maml":
        return mb.maml(model, inner_lr=0.05, inner_steps=1, **options)
    return mb.abml(model, inner_lr=1e-3, inner_steps=1, init_log_sigma=-3.0, kl_weight=0.01,
                   **options)


def episodes(seed):
    """One meta-batch of TASKS tasks with 2·WAYS classes (WAYS in the episode), 8×8 images;
    distinct classes have distinct mean brightness, so batch statistics matter."""
    rng = np.random.default_rng(seed)

    def part(per_class):
        labels = np.tile(np.repeat(np.arange(2 * WAYS), per_class), (TASKS, 1)).astype(np.int32)
        images = rng.random((TASKS, labels.shape[1], 8, 8, 1)).astype(np.float32)
        return images * (1 + labels[..., None, None, None]), labels

    return Task(part(SHOTS), part(QUERY))


def with_other_in_episode_queries(batch, seed):
    """The same tasks with the in-episode queries (labels < WAYS) drawn anew."""
    images, labels = (np.array(a) for a in batch.query)
    fresh = episodes(seed).query[0]
    inside = labels < WAYS
    images[inside] = fresh[inside]
    return Task(batch.support, (images, labels))


def evaluate(learner_, batch):
    params = learner_.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    return classification_evaluation(learner_, params, [batch], jax.random.PRNGKey(1), WAYS,
                                     num_samples=3)


@pytest.mark.parametrize("algorithm", ["maml", "abml"])
def test_out_of_episode_queries_share_the_batch_with_the_in_episode_ones(algorithm):
    """Swapping the in-episode queries changes the out-of-episode entropies (transductive batch
    norm sees both); scored in two separate calls, as before, it would change nothing."""
    batch = episodes(0)
    _, _, out = evaluate(learner(algorithm), batch)
    _, _, out_swapped = evaluate(learner(algorithm), with_other_in_episode_queries(batch, 5))
    assert np.max(np.abs(out - out_swapped)) > 1e-4


@pytest.mark.parametrize("algorithm", ["maml", "abml"])
def test_support_statistics_make_every_query_independent_of_the_others(algorithm):
    batch = episodes(0)
    _, _, out = evaluate(learner(algorithm, batch_norm="support"), batch)
    _, _, out_swapped = evaluate(learner(algorithm, batch_norm="support"),
                                 with_other_in_episode_queries(batch, 5))
    np.testing.assert_allclose(out, out_swapped, rtol=1e-5, atol=1e-6)


def test_each_task_is_adapted_once_for_both_kinds_of_query():
    """The entropies are those of one predict_tasks call on [in-episode; out-of-episode]."""
    abml = learner("abml")
    batch = episodes(3)
    report, inside, out = evaluate(abml, batch)
    task, outside = split_out_of_episode(batch, WAYS)
    params = abml.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), 0), TASKS)
    probs = np.asarray(abml.predict_tasks(params, task.support,
                                          np.concatenate([task.query[0], outside], axis=1),
                                          keys, 3))
    entropy = predictive_entropy(probs)
    np.testing.assert_allclose(inside, entropy[:, :WAYS * QUERY].ravel(), rtol=1e-6)
    np.testing.assert_allclose(out, entropy[:, WAYS * QUERY:].ravel(), rtol=1e-6)
    assert 0.0 <= report["out_of_episode_auroc"] <= 1.0


def test_batch_norm_takes_its_statistics_from_the_first_rows():
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 3, 3, 2)) * jnp.arange(1.0, 3.0)
    variables = BatchNorm().init(jax.random.PRNGKey(1), x)
    reference = np.asarray(x[:4])
    mean, var = reference.mean(axis=(0, 1, 2)), reference.var(axis=(0, 1, 2))
    expected = (np.asarray(x) - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(BatchNorm().apply(variables, x, statistics_rows=4), expected,
                               rtol=1e-5, atol=1e-5)
    whole = np.asarray(x)
    transductive = (whole - whole.mean((0, 1, 2))) / np.sqrt(whole.var((0, 1, 2)) + 1e-5)
    np.testing.assert_allclose(BatchNorm().apply(variables, x), transductive, rtol=1e-5,
                               atol=1e-5)


def test_support_mode_scores_the_outer_queries_with_the_support_statistics():
    """MAML with no inner step: the outer loss is the queries' cross-entropy under the network
    run on [support; query] with statistics of the support rows; transductively it differs."""
    model = mb.Conv4(num_classes=2 * WAYS, filters=4, blocks=2)
    maml = mb.maml(model, inner_steps=0, batch_norm="support")
    batch = episodes(1)
    params = maml.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    phi = params.q_theta.mean.mean
    rows = batch.support[0].shape[1]

    def query_nll(support, query):
        logits = model.apply({"params": phi}, jnp.concatenate([support[0], query[0]]),
                             statistics_rows=rows)[rows:]
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), query[1][:, None], 1))

    expected = np.mean([query_nll(*(jax.tree_util.tree_map(lambda a: a[i], part)
                                     for part in batch)) for i in range(TASKS)])
    loss, _ = maml.loss(params, batch, jax.random.PRNGKey(2))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    transductive, _ = dataclasses.replace(maml, batch_norm="transductive").loss(
        params, batch, jax.random.PRNGKey(2))
    assert abs(float(transductive) - float(loss)) > 1e-3
    with pytest.raises(ValueError, match="`batch_norm` must be one of"):
        dataclasses.replace(maml, batch_norm="running")


def test_posterior_scales_report_the_prior_and_the_adapted_sigma_per_parameter():
    """With the Fisher rule σ_λ⁻² = F/β + σ_θ⁻², so σ_λ < σ_θ for the head's kernel, which the
    support informs; one entry of each per parameter; MAML has no σ."""
    abml = learner("abml", local_variance="fisher")
    batch = episodes(2)
    params = abml.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    scales = posterior_scales(abml, params, batch.support, jax.random.PRNGKey(1))
    assert scales["sigma_theta/Dense_0/kernel"] == pytest.approx(np.exp(-3.0), rel=1e-5)
    assert scales["sigma_lambda/Dense_0/kernel"] < 0.99 * scales["sigma_theta/Dense_0/kernel"]
    assert len(scales) == 2 * len(jax.tree_util.tree_leaves(params.q_theta.mean.mean))
    maml = learner("maml")
    assert posterior_scales(maml, maml.init_params(jax.random.PRNGKey(0), batch.support[0][0]),
                            batch.support, jax.random.PRNGKey(1)) == {}


@pytest.mark.parametrize("outside_ways", [5, 2])
def test_split_out_of_episode_keeps_every_label_below_ways_in_the_task(outside_ways):
    """N + O classes (O < N where the split is short of classes, e.g. 10-way on CIFAR-FS's 16
    validation classes): the task holds exactly labels 0..N-1, the rest are out of the episode."""
    ways, shots, query, rng = 5, 2, 3, np.random.default_rng(0)
    labels = lambda per_class: np.stack([rng.permutation(np.repeat(np.arange(ways + outside_ways),
                                                                   per_class)) for _ in range(4)])
    s_y, q_y = labels(shots), labels(query)
    batch = Task((s_y[..., None].astype(np.float32), s_y), (q_y[..., None].astype(np.float32), q_y))
    task, outside = split_out_of_episode(batch, ways)
    assert task.support[1].shape == (4, ways * shots) and task.query[1].shape == (4, ways * query)
    assert np.all(task.support[1] < ways) and np.all(task.query[1] < ways)
    np.testing.assert_array_equal(task.support[0][..., 0], task.support[1])
    assert outside.shape == (4, outside_ways * query, 1) and np.all(outside >= ways)
