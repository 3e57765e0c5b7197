"""Updates (phases of losses, parameters and optimizers), optimizers, the trainer and data-parallel ranks."""
