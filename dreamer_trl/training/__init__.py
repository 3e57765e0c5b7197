"""Updates (phases of losses, parameters and optimizers), optimizers, the trainer with its collection strategies
and its world (one process, or data-parallel torchrun ranks)."""
