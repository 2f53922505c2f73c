"""The runtime tests' fixture service (penguins): its package holds custom_features."""
