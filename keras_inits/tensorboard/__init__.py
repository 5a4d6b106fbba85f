"""TensorBoard output without TensorFlow: protos, event writer, depth-profile image, callback.

* :mod:`~keras_inits.tensorboard.protos`: ``Summary`` protos built by hand (scalars,
  histograms, PNG image, the custom-scalars layout) and the tags;
* :mod:`~keras_inits.tensorboard.writer`: event files written synchronously, record by
  record, kept readable and retried on a full disk, re-created when deleted;
* :mod:`~keras_inits.tensorboard.image`: the depth-profile PNG (matplotlib, optional);
* :mod:`~keras_inits.tensorboard.callback`: the ``ActivationStatistics`` Keras callback.
"""
