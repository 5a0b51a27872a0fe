"""The posterior predictive of a meta-learner on new tasks (MATH.md §5), as pure functions of
a ``MetaLearner`` spec."""
import jax

from metabayes.elbo import draw_outputs
from metabayes.meta_objective import adapt_task, map_tasks, scoring_network


def predict(learner, params, support, query_inputs: jax.Array, key: jax.Array,
            num_samples: int = 10):
    """Posterior predictive (1/T) Σ_t p(y | x, φ_t), φ_t ~ q(φ; λ(S)), for one task.

    Adapts from θ = E_q(θ)[θ] (ψ itself for the point estimate). The T samples run one
    after another (``lax.map``), so memory does not grow with T; a point-mass posterior
    (MAML) runs the network once. Batch norm (``batch_norm``): "transductive" normalises
    the N_q query inputs by their own statistics, so every query's prediction depends on
    the others in the batch; "support" uses the support set's. Returns class probabilities
    [N_q, C] (Categorical) or a GaussianPredictive (Gaussian).
    """
    adapt_key, sample_key = jax.random.split(key)
    local_posterior = adapt_task(learner, params, params.q_theta.mean, support, adapt_key)
    outputs = draw_outputs(scoring_network(learner, support[0]), local_posterior, query_inputs,
                           sample_key, num_samples, learner.estimator, sequential=True)
    return learner.likelihood.predictive(outputs)


def predict_tasks(learner, params, support, query_inputs: jax.Array, keys: jax.Array,
                  num_samples: int):
    """``predict`` for M tasks: support [M, ...], query_inputs [M, N_q, ...], keys [M] ->
    probabilities [M, N_q, C] (or a batched GaussianPredictive). Tasks are vmapped in chunks
    as ``metabayes.meta_objective.map_tasks`` says."""
    one_task = lambda p, task: predict(learner, p, *task, num_samples)
    return map_tasks(learner, one_task, params, (support, query_inputs, keys))
