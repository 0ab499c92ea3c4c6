"""RLRF services: the reward API (``reward_api``) and the VLM judge front (``judge_proxy``)."""
