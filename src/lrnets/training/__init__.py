"""A training run from a composed config (``run``): the Lightning module and callbacks, the
full-precision reference and the initialisation from it, resume and stops, choosing the
discrete network on validation (``evaluation``) and what a run writes besides results."""
