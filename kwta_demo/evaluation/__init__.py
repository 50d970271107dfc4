"""Measuring models: accuracy, robust accuracy and its results files, the gradient-masking
audit, transfer matrices, loss landscapes, checks of checkpoints, the speed of k-WTA."""
