"""The evaluation suite as registered metric families (one module each; ``base.py`` says what a family is).

    metrics = evaluate(ctx, test_set, rank, world)                      # the configured groups
    metrics = evaluate(ctx, test_set, rank, world, keys=["robust/pgd"])  # exactly what these keys need
"""
from trainables.evaluation.base import (
    FAMILIES,
    WORK,
    Batch,
    EvalContext,
    Family,
    FamilyParams,
    correct_only_keys,
    families_of_group,
    family_of,
    groups,
    register_family,
    register_work,
)
from trainables.evaluation.suite import configured_keys, evaluate, per_image_table, plan, run_pass, subset_indices

__all__ = ["FAMILIES", "WORK", "Batch", "EvalContext", "Family", "FamilyParams", "correct_only_keys",
           "families_of_group", "family_of",
           "groups", "register_family", "register_work", "configured_keys", "evaluate", "per_image_table", "plan",
           "run_pass", "subset_indices"]
