"""Keras 3's `fit` under `tf.distribute`, made to work with several replicas and workers.

On Keras 3.8 to 3.15 with TensorFlow 2.18 to 2.21 (checked: 3.15.1, and master at 3.16.0.dev)
two places of Keras' TensorFlow trainer fail:

1. Before the first step, `_maybe_symbolic_build` builds the model's variables from a batch
   that it averages across replicas. Replicas may hold batches of different sizes (a global
   batch of 7 on 2 replicas is 4 + 3), which cannot be averaged ("Inputs to operation AddN
   ... must have the same size and shape"); and the collective all-reduce of a multi-worker
   strategy cannot reduce a nest of per-replica values at all ("Attempt to convert a value
   (PerReplica...)": keras-team/keras#20585, open).
2. In a multi-worker cluster, `reduce_per_replica` reduces the scalar logs (the loss, the
   metrics) along axis 0, which a scalar does not have: "Invalid reduction dimension 0 for
   input with 0 dimensions", tensorflow/tensorflow#72388 (closed as stale; its only advice
   was to go back to Keras 2).

`patch_keras_for_distribution` replaces those two functions with versions that differ only
where they failed: the symbolic build gets this worker's first replica's batch (only its
shapes and types matter), and a cluster's scalar logs are averaged across replicas (axis
None). With it, two workers on one machine train one model together, and two replicas take
any batch size (tests/training/test_distribute.py). It touches Keras internals, so it checks
that they are there first.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

_patched = False


def patch_keras_for_distribution() -> None:
    global _patched
    if _patched:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    needed = ("_collective_all_reduce_multi_worker", "reduce_per_replica", "TensorFlowTrainer")
    if not all(hasattr(trainer, name) for name in needed) or not hasattr(
            trainer.TensorFlowTrainer, "_maybe_symbolic_build"):
        logger.warning("this Keras has changed the trainer internals catdog works around for distributed "
                       "training; training without the workaround")
        return
    in_cluster = trainer._collective_all_reduce_multi_worker
    build, reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is None or strategy is None or strategy.num_replicas_in_sync == 1:
            return build(self, iterator=iterator, data_batch=data_batch)

        def first_local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        for _, _, batches in iterator:  # as Keras does: the first batch of the epoch iterator
            data_batch = tree.map_structure(first_local, next(batches))
            break
        return build(self, iterator=None, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if in_cluster(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica  # looked up as a module global by the step functions
    _patched = True
