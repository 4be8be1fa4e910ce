"""Scale-conditioned adapters (CS-HLoRA) and the baselines they are compared with."""
