"""TensorBoard output without TensorFlow: protos, event writer, depth-profile image, callback.

* :mod:`~keras_inits.tensorboard.protos`: ``Summary`` protos built by hand (scalars,
  histograms, PNG image, the custom-scalars layout, the depth profile) and the tags;
* :mod:`~keras_inits.tensorboard.writer`: event files written synchronously, record by
  record, kept readable and retried on a full disk, re-created when deleted; snapshots
  that a live TensorBoard shows as the latest only;
* :mod:`~keras_inits.tensorboard.image`: the depth-profile PNG (matplotlib, optional);
* :mod:`~keras_inits.tensorboard.profile`: the depth-profile runs (step = depth index);
* :mod:`~keras_inits.tensorboard.callback`: the ``ActivationStatistics`` Keras callback.
"""
