"""The thresholds under which tests split the real mi5 data: small enough to be quick,
strict enough that every user has a profile, a validation and a test review."""

from __future__ import annotations

from dpl_engine.evaluation import split as sp

DEV_PARAMS = sp.SplitParams(min_chars=200, min_user_reviews=6, min_item_reviewers=3)
