"""Entity resolution over the staged mentions: truth, evaluation, baseline, Splink model, clusters."""
