"""One trial's measured training loop: the trainer, its instruments, variants and lr rules."""
