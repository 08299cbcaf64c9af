"""Small helpers every layer may use, importing nothing else of the project: lazy exports, graceful shutdown,
the HTML report shell, paired statistics and the code version recorded in every run."""
