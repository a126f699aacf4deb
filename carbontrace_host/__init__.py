"""Host-side (CPython) helpers every tier shares: the cloud, the gateway and the command line import these,
so they live outside the command-line package (which nothing else may import)."""
