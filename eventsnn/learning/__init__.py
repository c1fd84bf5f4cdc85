"""STDP rules, losses and regularizers."""
