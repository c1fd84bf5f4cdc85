"""LightningModules: surrogate-gradient and STDP classifiers."""
