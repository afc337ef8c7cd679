"""The challenge's submission rules, shared by the packer and the evaluator.

``align`` puts a submitted array on a test row's grid (UPSTREAM.md §8.3),
``zipsafety`` judges a submission zip from its member list (§9.1) and
``reader`` reads a submission in place, for the evaluator and ``csc-pack
--check`` alike (nothing extracted, every member bounded by ``chunks``). They live
behind the ``csc-common[submission]`` extra because the resampling needs
scikit-image, which no other stage image has to carry.
"""
