"""``rlrf eval``: the RLRF / StarVector metrics of predictions against references (docs/EVAL.md).

    config   EvalSettings (the eval-only weight paths, RLRF_*), EvalOptions (one run's choices)
    inputs   predictions and references from folders or JSONL, paired by id
    metrics  which learned metrics are configured, loaded once (LPIPS, DINO, CLIP, the judge)
    run      evaluate(): the sandboxed renders and every metric, per chunk of samples
    summary  statuses, means over ok rows, counts, the text table
    report   the self-contained HTML report, worst samples first
    cli      the ``rlrf eval`` parser and command

Imported one way only: ``cli`` ▸ ``run`` ▸ ``metrics``/``report`` ▸ ``summary`` ▸ ``inputs``/``config``.
"""
