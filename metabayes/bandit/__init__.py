"""The wheel bandit of ABML's Table 1: the environment (``wheel``), the meta-training episodes
and network (``episodes``), the agents and the play loop (``agents``), and the NeuralLinear
baseline (``neural_linear``)."""
