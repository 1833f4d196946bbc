"""Model API and training: the fit/evaluate/predict loop and the Keras objects it uses.

``loop`` (``TrainingMixin``: fit, evaluate, predict, train_on_batch), ``data`` (checking
and converting user arrays, batching), ``tracking`` (loss and metric trackers over
batches), ``losses``, ``metrics``, ``optimizers``, ``callbacks``. The public names are
re-exported by ``graphmask.losses``, ``graphmask.metrics``, ``graphmask.optimizers`` and
``graphmask.callbacks``.
"""
