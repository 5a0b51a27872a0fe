"""The wheel bandit of ABML's Table 1: the environment (``wheel``), the meta-training episodes
and network (``episodes``), what an agent keeps of its pulls (``history``), the agents and the
play loop (``agents``), the NeuralLinear baseline (``neural_linear``) and Table 1's protocol
(``trials``)."""
