"""Everything framework-free: config, corpus, vocabulary, batches, weights, checkpoints, sampling,
plotting and the command line. Nothing under common/ imports torch, tensorflow or keras."""
